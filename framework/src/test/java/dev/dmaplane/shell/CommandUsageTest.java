package dev.dmaplane.shell;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.apache.felix.gogo.runtime.CommandProcessorImpl;
import org.apache.felix.gogo.runtime.threadio.ThreadIOImpl;
import org.apache.felix.service.command.CommandSession;
import org.apache.felix.service.command.Descriptor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The usage of Gogo commands from their {@code @Descriptor}s, and the Gogo runtime's own dispatch (Felix Gogo
 * {@code Reflective.invoke}: the best-matching public method of the function's name, else {@code _main} with the
 * function's name first, else "Cannot coerce") through a real {@code CommandProcessorImpl}.
 */
class CommandUsageTest {
    /** A command object as the bundles write them. */
    public static final class Sample {
        @Descriptor("the last 20 events")
        public String trace() {
            return "trace()";
        }

        @Descriptor("the last N events")
        public String trace(@Descriptor("N") int count) {
            return "trace(" + count + ")";
        }

        @Descriptor("bind BDF to DRIVER")
        public String bind(@Descriptor("BDF") String bdf, @Descriptor("DRIVER") String driver) {
            return "bind(" + bdf + "," + driver + ")";
        }

        public String plain(String word, String... rest) {
            return "plain";
        }

        /** What Gogo calls when no form takes the arguments. */
        public String _main(String... argv) {
            throw CommandUsage.wrongArguments(this, "t", argv);
        }
    }

    /** The same without {@code _main}: Gogo's own answer. */
    public static final class Bare {
        public String trace(int count) {
            return "trace(" + count + ")";
        }
    }

    private ThreadIOImpl threadIo;
    private CommandSession session;

    @BeforeEach
    void gogo() {
        threadIo = new ThreadIOImpl();
        threadIo.start();
        CommandProcessorImpl processor = new CommandProcessorImpl(threadIo);
        Sample sample = new Sample();
        for (String f : List.of("trace", "bind", "plain")) {
            processor.addCommand("t", sample, f);
        }
        processor.addCommand("bare", new Bare(), "trace");
        session = processor.createSession(new ByteArrayInputStream(new byte[0]),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    }

    @AfterEach
    void stop() {
        session.close();
        threadIo.stop();
    }

    @Test
    void eachFormIsALineWithItsArgumentsAndWhatItDoes() {
        assertEquals(List.of(
                String.format("%-32s %s", "t:trace", "the last 20 events"),
                String.format("%-32s %s", "t:trace N", "the last N events")), CommandUsage.forms(new Sample(), "t", "trace"));
        assertEquals(List.of(String.format("%-32s %s", "t:bind BDF DRIVER", "bind BDF to DRIVER")),
                CommandUsage.forms(new Sample(), "t", "bind"));
        assertEquals(List.of("t:plain STRING [STRING...]"), CommandUsage.forms(new Sample(), "t", "plain"),
                "undescribed: the types");
        assertEquals("the last 20 events", CommandUsage.description(new Sample(), "trace").orElseThrow());
        assertTrue(CommandUsage.description(new Sample(), "plain").isEmpty());
    }

    @Test
    void gogoCallsTheFormThatTakesTheArguments() throws Exception {
        assertEquals("trace()", session.execute("t:trace"));
        assertEquals("trace(5)", session.execute("t:trace 5"));
        assertEquals("bind(0000:03:00.0,gpu)", session.execute("t:bind 0000:03:00.0 gpu"));
    }

    /** What no form takes is the command's usage, EINVAL, instead of Gogo's "Cannot coerce". */
    @Test
    void argumentsNoFormTakesAnswerWithTheUsage() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> session.execute("t:trace five"));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals("EINVAL: t:trace five: no form of t:trace takes these arguments; usage:\n"
                + "  " + String.format("%-32s %s", "t:trace", "the last 20 events") + "\n"
                + "  " + String.format("%-32s %s", "t:trace N", "the last N events"), e.getMessage());
        ErrnoException bind = assertThrows(ErrnoException.class, () -> session.execute("t:bind 0000:03:00.0"));
        assertTrue(bind.getMessage().startsWith("EINVAL: t:bind 0000:03:00.0: no form of t:bind takes these"
                + " arguments; usage:\n  t:bind BDF DRIVER "), bind.getMessage());

        IllegalArgumentException gogo = assertThrows(IllegalArgumentException.class, () -> session.execute("bare:trace x"));
        assertTrue(gogo.getMessage().startsWith("Cannot coerce"), "without _main: " + gogo.getMessage());
        assertFalse(bind.getMessage().contains("Cannot coerce"));
    }
}
