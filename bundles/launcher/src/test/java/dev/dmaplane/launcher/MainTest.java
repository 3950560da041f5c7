package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;

import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Command-line parsing, without a framework. */
class MainTest {
    @Test
    void noArgumentsMeansHelp() {
        assertEquals("help", Main.parse(new String[0]).mode());
        assertEquals("help", Main.parse(new String[]{"--help"}).mode());
    }

    @Test
    void optionsAndShellCommandLine() {
        Main.Options o = Main.parse(new String[]{"shell", "--work", "/tmp/w", "--dist", "/tmp/d", "dmaplane:trace", "5", "--x"});
        assertEquals(Path.of("/tmp/w"), o.work());
        assertEquals(Path.of("/tmp/d"), o.dist());
        assertEquals(List.of("dmaplane:trace", "5", "--x"), o.rest(), "after the command everything is its own");
    }

    /** Each command has its own default work directory, so a demo or a shell never wipes a running run's. */
    @Test
    void defaultWorkDirectoryIsUnderTargetOnePerCommand() {
        if (System.getProperty("dmaplane.work") != null) {
            return; // an explicit work directory overrides the defaults; nothing to check
        }
        assertTrue(Main.parse(new String[]{"demo", "--dist", "/tmp/d"}).work().endsWith(Path.of("target", "dmaplane-demo")));
        assertTrue(Main.parse(new String[]{"run", "--dist", "/tmp/d"}).work().endsWith(Path.of("target", "dmaplane-run")));
        assertTrue(Main.parse(new String[]{"shell", "--dist", "/tmp/d", "lb"}).work().endsWith(Path.of("target", "dmaplane-shell")));
    }

    @Test
    void mistakesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> Main.parse(new String[]{"fly"}));
        assertThrows(IllegalArgumentException.class, () -> Main.parse(new String[]{"run", "--bogus"}));
        assertThrows(IllegalArgumentException.class, () -> Main.parse(new String[]{"run", "--work"}));
        assertThrows(IllegalArgumentException.class, () -> Main.parse(new String[]{"shell"}));
        assertThrows(IllegalArgumentException.class, () -> Main.parse(new String[]{"run", "--topology", "/nonexistent.yaml"}));
        assertThrows(IllegalArgumentException.class, () -> Main.parse(new String[]{"demo", "--topology", "pom.xml"}));
    }

    @Test
    void usageErrorsExitWithTwo() throws Exception {
        assertEquals(2, Main.run(new String[]{"fly"}, System.out, new PrintStream(OutputStream.nullOutputStream())));
    }
}
