package dev.dmaplane.launcher;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.osgi.framework.FrameworkEvent;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Gogo shell of the runtime, in a real embedded Felix with Soft-RoCE, perftest and gpudirect hot-loaded: the
 * commands carry the Gogo runtime's {@code @Descriptor} (Felix Gogo's {@code Basic.help} prints them), a command
 * line no form of a command takes answers with the command's usage instead of Gogo's "Cannot coerce" (the
 * {@code _main} fallback of {@code Reflective.invoke}), and {@code dmaplane:help} lists every command of every
 * loaded bundle.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class GogoShellIT {
    static final Path GPUDIRECT = RuntimeIT.DIST.resolve("drivers").resolve("gpudirect.jar");
    static final Duration WAIT = Duration.ofSeconds(20);
    /** A command of every scope the dmaplane bundles register. */
    static final List<String> COMMANDS = List.of("dmaplane:lspci", "dmaplane:trace", "dmaplane:deploy", "dmaplane:help",
            "rdma:dev", "rdma:link", "rdma:res", "rdma:statistic", "rdma:ibv_devices", "rdma:ibv_devinfo", "rxe:carrier", "accel:devices", "accel:objects",
            "accel:fdinfo", "gpudirect:demo", "dmaplane:perf");

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;

    @BeforeEach
    void start() throws Exception {
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"), null, false, 100), WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(WAIT), "framework stopped in time");
    }

    @Test
    void helpListsEveryCommandOfEveryLoadedBundle() throws Exception {
        DemoKit.deploy(SoftRoceIT.JAR, rt.deployDir());
        DemoKit.deploy(PerftestIT.JAR, rt.deployDir());
        DemoKit.deploy(GPUDIRECT, rt.deployDir());
        String help = DemoKit.await("every scope in dmaplane:help", WAIT, () -> {
            String s = gogo("dmaplane:help");
            return COMMANDS.stream().allMatch(s::contains) ? Optional.of(s) : Optional.empty();
        });
        assertTrue(help.contains("dmaplane:lspci              PCI hierarchy"), "the dmaplane commands first: " + help);
        assertTrue(help.contains("\n  dev.dmaplane.rdma.core\n"), help);
        assertTrue(help.contains("\n    rdma:dev                   rdma dev: one line per device\n"), help);
        assertTrue(help.contains("\n    rxe:carrier                the carrier of the device's netdev"), help);
        assertFalse(help.contains("felix:lb") || help.contains("gogo:echo"), "the shell's own are help's: " + help);
    }

    @Test
    void helpOfACommandShowsItsArguments() throws Exception {
        String trace = gogo("help dmaplane:trace");
        assertTrue(trace.contains("the last N trace events of KIND"), trace);
        assertTrue(trace.contains("N|KIND"), "the parameters' descriptors: " + trace);
        String lspci = gogo("help dmaplane:lspci");
        assertTrue(lspci.contains("[-s [[[[DOM]:]BUS]:][SLOT][.[FN]]]") && lspci.contains("[BDF]"), lspci);
    }

    @Test
    void aWrongArgumentPrintsTheCommandsUsage() throws Exception {
        Gogo.CommandException iommu = assertThrows(Gogo.CommandException.class,
                () -> rt.gogo("dmaplane:iommu faults extra", WAIT));
        assertTrue(iommu.getMessage().contains("EINVAL: dmaplane:iommu faults extra: no form of dmaplane:iommu"
                + " takes these arguments; usage:\n  dmaplane:iommu "), iommu.getMessage());
        assertTrue(iommu.getMessage().contains("\n  dmaplane:iommu faults|mappings|-j "), iommu.getMessage());
        assertFalse(iommu.getMessage().contains("Cannot coerce"), iommu.getMessage());
        // lspci takes any words, as pciutils' getopt does, and answers a bad one with its own usage
        Gogo.CommandException lspci = assertThrows(Gogo.CommandException.class,
                () -> rt.gogo("dmaplane:lspci -v 0000:03:00.0 extra", WAIT));
        assertTrue(lspci.getMessage().contains("EINVAL: dmaplane:lspci: bad option 'extra' after '0000:03:00.0'; "
                + "usage: dmaplane:lspci [-n[n]] "), lspci.getMessage());

        Gogo.CommandException bind = assertThrows(Gogo.CommandException.class, () -> rt.gogo("dmaplane:bind 0000:03:00.0", WAIT));
        assertTrue(bind.getMessage().contains("usage:\n  dmaplane:bind BDF DRIVER "), bind.getMessage());
        Gogo.CommandException accel = assertThrows(Gogo.CommandException.class, () -> rt.gogo("accel:objects a b c", WAIT));
        assertTrue(accel.getMessage().contains("usage:\n  accel:objects "), accel.getMessage());
    }

    /** {@code exit} stops the framework as {@code stop 0} does, so that {@code dmaplane run} ends. */
    @Test
    void exitStopsTheRuntime() throws Exception {
        assertEquals("stopping the runtime", rt.gogo("exit", WAIT));
        assertEquals(FrameworkEvent.STOPPED, rt.framework().waitForStop(WAIT.toMillis()).getType());
    }

    private String gogo(String line) {
        try {
            return rt.gogo(line, WAIT);
        } catch (Exception e) {
            throw new IllegalStateException(line + ": " + e.getMessage(), e);
        }
    }
}
