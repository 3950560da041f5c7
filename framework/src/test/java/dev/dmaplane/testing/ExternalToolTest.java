package dev.dmaplane.testing;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.*;

/** A missing oracle program skips a test, unless the build requires it, where it fails the test. */
class ExternalToolTest {
    private static final String MISSING = "dmaplane-no-such-program";
    private final String saved = System.getProperty(ExternalTool.REQUIRE_PROPERTY);

    @AfterEach
    void restore() {
        if (saved == null) {
            System.clearProperty(ExternalTool.REQUIRE_PROPERTY);
        } else {
            System.setProperty(ExternalTool.REQUIRE_PROPERTY, saved);
        }
    }

    @Test
    void aMissingProgramSkipsWithHowToInstallIt() {
        System.clearProperty(ExternalTool.REQUIRE_PROPERTY);
        TestAbortedException e = assertThrows(TestAbortedException.class, () -> ExternalTool.require(MISSING, "apt-get install it"));
        assertTrue(e.getMessage().contains(MISSING) && e.getMessage().contains("apt-get install it"), e.getMessage());
    }

    @Test
    void aMissingProgramTheBuildRequiresFails() {
        System.setProperty(ExternalTool.REQUIRE_PROPERTY, "tshark, " + MISSING);
        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> ExternalTool.require(MISSING, "apt-get install it"));
        assertTrue(e.getMessage().contains("-D" + ExternalTool.REQUIRE_PROPERTY), e.getMessage());
    }

    @Test
    void runReturnsStandardOutputAndFailsOnAnExitStatus() throws Exception {
        ExternalTool sh = ExternalTool.require("sh", "a POSIX shell");
        assertEquals("out\n", sh.run(Duration.ofSeconds(30), "-c", "echo out; echo err >&2"));
        AssertionFailedError e = assertThrows(AssertionFailedError.class,
                () -> sh.run(Duration.ofSeconds(30), "-c", "echo broken >&2; exit 3"));
        assertTrue(e.getMessage().contains("broken"), e.getMessage());
    }

    @Test
    void aProgramThatDoesNotFinishIsKilledAndFails() {
        ExternalTool sh = ExternalTool.require("sh", "a POSIX shell");
        AssertionFailedError e = assertThrows(AssertionFailedError.class,
                () -> sh.run(Duration.ofMillis(200), "-c", "exec sleep 30"));
        assertTrue(e.getMessage().contains("did not finish"), e.getMessage());
    }
}
