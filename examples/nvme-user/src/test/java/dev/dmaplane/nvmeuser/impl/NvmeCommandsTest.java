package dev.dmaplane.nvmeuser.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Gogo command {@code nvme:perf}: spdk_nvme_perf's options ({@code app/spdk_nvme_perf/perf.c}) on the runtime's
 * machine, its report returned, a bad option EINVAL.
 */
class NvmeCommandsTest {
    private final Machine machine = Machine.bootDefault();
    private final NvmeCommands commands = new NvmeCommands(machine);

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void perfRunsOnTheRuntimesMachine() {
        String report = commands.perf("-q", "4", "-o", "4096", "-w", "randread", "-t", "1");
        assertTrue(report.contains("PCIE (0000:06:00.0) NSID 1 from core  0:"), report);
        assertTrue(report.contains("Device Information"), report);
        assertTrue(machine.pci().function("0000:06:00.0").driver().isEmpty(), "given back after the run");
    }

    @Test
    void perfThroughIommufd() {
        String report = commands.perf("-q", "4", "-o", "4096", "-w", "randread", "-t", "1", "--iommufd");
        assertTrue(report.contains("iommufd IOAS"), report);
        assertTrue(machine.pci().function("0000:06:00.0").driver().isEmpty(), "given back after the run");
    }

    @Test
    void badOptionsAreEinval() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> commands.perf("-q", "32", "-w", "read", "-t", "1"));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("option -o is required"), e.getMessage());
        assertTrue(commands.perf("--help").contains("--io-depth"));
    }
}
