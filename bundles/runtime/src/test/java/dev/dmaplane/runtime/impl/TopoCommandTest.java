package dev.dmaplane.runtime.impl;

import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.runtime.topo.Graphviz;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code dmaplane:topo [--dot|--svg] [FILE]} (issue 16, "Pictures and recordings"): DOT by default, SVG through
 * Graphviz's {@code dot -Tsvg} (its man page: {@code -Tsvg}, {@code -o FILE}) run as a process with a bounded wait,
 * printed or written to FILE; a missing {@code dot}, a {@code dot} that fails or hangs, a bad option and a file that
 * cannot be written are each one {@code ErrnoException} naming what was wrong, and nothing is written.
 */
class TopoCommandTest {
    @TempDir
    Path dir;
    Machine machine;
    DriverBinder binder;

    @BeforeEach
    void boot() {
        machine = RuntimeComponentsTest.bootWithModels();
        binder = new DriverBinder(machine);
    }

    @AfterEach
    void close() {
        binder.deactivate();
        machine.close();
    }

    private DmaplaneCommands commands(Graphviz graphviz) {
        return new DmaplaneCommands(machine, binder, DmaBufs.of(machine), graphviz, dir);
    }

    private static ErrnoException error(Errno expected, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(expected, e.errno(), e.getMessage());
        return e;
    }

    /** An executable shell script {@code body} named {@code name}, standing in for {@code dot}. */
    private Path script(String name, String body) throws Exception {
        Path p = Files.writeString(dir.resolve(name), "#!/bin/sh\n" + body + "\n");
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwx------"));
        return p;
    }

    @Test
    void dotIsTheDefaultPrintedOrWrittenToAFile() throws Exception {
        DmaplaneCommands cmds = commands(new Graphviz("dmaplane-no-such-dot", Duration.ofSeconds(5)));
        String dot = cmds.topo();
        assertTrue(dot.startsWith("digraph dmaplane {") && dot.endsWith("}"), dot);
        assertEquals(dot, cmds.topo("--dot"));
        String said = cmds.topo("machine.dot");
        assertTrue(said.contains("as DOT") && said.contains(dir.resolve("machine.dot").toString()), said);
        assertEquals(dot, Files.readString(dir.resolve("machine.dot")).stripTrailing());
        cmds.topo("--dot", "again.dot");
        assertEquals(dot, Files.readString(dir.resolve("again.dot")).stripTrailing());
        assertTrue(cmds.help().contains("dmaplane:topo [--dot|--svg] [FILE]"), cmds.help());
        assertEquals(dot, ((String) new MachineQuery(machine).apply("topology")).stripTrailing(),
                "the launcher's way to the same picture");
    }

    @Test
    void svgGoesThroughTheRealGraphviz() throws Exception {
        ExternalTool dot = ExternalTool.require("dot", "apt-get install graphviz (Debian, Ubuntu), dnf install graphviz");
        DmaplaneCommands cmds = commands(new Graphviz(dot.path().toString(), Duration.ofSeconds(60)));
        String svg = cmds.topo("--svg");
        assertTrue(svg.startsWith("<?xml") && svg.contains("<svg") && svg.contains("0000:03:00.0"), svg);
        cmds.topo("--svg", "machine.svg");
        assertTrue(Files.readString(dir.resolve("machine.svg")).contains("cluster_iommu_group_"));
    }

    @Test
    void aMissingDotIsNamedAndNothingIsWritten() {
        DmaplaneCommands cmds = commands(new Graphviz("dmaplane-no-such-dot", Duration.ofSeconds(5)));
        ErrnoException e = error(Errno.ENOENT, () -> cmds.topo("--svg", "machine.svg"));
        assertTrue(e.getMessage().contains("'dmaplane-no-such-dot' is not installed")
                && e.getMessage().contains("graphviz"), e.getMessage());
        assertFalse(Files.exists(dir.resolve("machine.svg")));
    }

    @Test
    void aFailingOrHangingDotIsAnErrorAndNothingIsWritten() throws Exception {
        Path failing = script("failing-dot", "echo 'Error: syntax error in line 1' >&2; exit 3");
        ErrnoException e = error(Errno.EIO, () -> commands(new Graphviz(failing.toString(), Duration.ofSeconds(30)))
                .topo("--svg", "machine.svg"));
        assertTrue(e.getMessage().contains("status 3") && e.getMessage().contains("syntax error in line 1"), e.getMessage());
        Path hanging = script("hanging-dot", "exec sleep 60");
        e = error(Errno.ETIMEDOUT, () -> commands(new Graphviz(hanging.toString(), Duration.ofMillis(300)))
                .topo("--svg", "machine.svg"));
        assertTrue(e.getMessage().contains("did not finish within PT0.3S; killed"), e.getMessage());
        assertFalse(Files.exists(dir.resolve("machine.svg")));
    }

    @Test
    void badArgumentsAreEinvalNamingThem() {
        DmaplaneCommands cmds = commands(new Graphviz("dmaplane-no-such-dot", Duration.ofSeconds(5)));
        assertTrue(error(Errno.EINVAL, () -> cmds.topo("--png")).getMessage()
                .contains("bad option '--png'; usage: dmaplane:topo [--dot | --svg] [FILE]"));
        assertTrue(error(Errno.EINVAL, () -> cmds.topo("--svg", "--dot")).getMessage().contains("'--dot' after '--svg'"));
        assertTrue(error(Errno.EINVAL, () -> cmds.topo("a.dot", "b.dot")).getMessage().contains("second file 'b.dot'"));
        assertTrue(error(Errno.EINVAL, () -> cmds.topo("")).getMessage().contains("option ''"));
        assertTrue(error(Errno.EINVAL, () -> cmds.topo("--dot", "bad\0name")).getMessage().contains("file name"));
        assertTrue(error(Errno.EIO, () -> cmds.topo("--dot", "no-such-dir/m.dot")).getMessage()
                .contains("cannot write 'no-such-dir/m.dot'"));
        assertEquals(Errno.EINVAL, error(Errno.EINVAL, () -> new Graphviz(" ", Duration.ofSeconds(1))).errno());
        assertEquals(Errno.EINVAL, error(Errno.EINVAL, () -> new Graphviz("dot", Duration.ZERO)).errno());
    }
}
