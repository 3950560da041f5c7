package dev.dmaplane.machine;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Per-machine state of the layers above the framework, as a kernel subsystem keeps its lists per host
 * ({@code drivers/dma-buf/dma-buf.c}'s {@code dmabuf_list}, {@code drivers/pci/p2pdma.c}'s {@code pdev->p2pdma}):
 * one instance per machine and type, made on first use, closed with the machine and gone with it.
 */
class MachineAttachmentTest {
    private final Machine machine = Machine.bootDefault();
    private final List<String> closed = new ArrayList<>();

    @AfterEach
    void close() {
        machine.close();
    }

    /** A core of some layer above. */
    private class Core implements AutoCloseable {
        final String name;
        boolean memoryOpenAtClose;

        Core(String name) {
            this.name = name;
        }

        @Override
        public void close() {
            memoryOpenAtClose = !machine.memory().isClosed();
            closed.add(name);
        }
    }

    /** Another layer's core. */
    private final class OtherCore extends Core {
        OtherCore() {
            super("other");
        }
    }

    @Test
    void oneInstancePerMachineAndTypeMadeOnce() {
        AtomicInteger made = new AtomicInteger();
        Core first = machine.attachment(Core.class, m -> {
            assertSame(machine, m);
            made.incrementAndGet();
            return new Core("core");
        });
        assertSame(first, machine.attachment(Core.class, m -> new Core("second")));
        assertEquals(1, made.get(), "the factory runs on the first call only");
        try (Machine other = Machine.bootDefault()) {
            assertNotSame(first, other.attachment(Core.class, m -> new Core("core of another machine")));
        }
        assertEquals(List.of("core of another machine"), closed, "closed with its own machine only");
    }

    @Test
    void closeableAttachmentsCloseWithTheMachineNewestFirstBeforeItsMemory() {
        Core core = machine.attachment(Core.class, m -> new Core("core"));
        OtherCore other = machine.attachment(OtherCore.class, m -> new OtherCore());
        machine.attachment(String.class, m -> "not closeable");

        machine.close();

        assertEquals(List.of("other", "core"), closed);
        assertTrue(core.memoryOpenAtClose && other.memoryOpenAtClose, "the cores close while RAM is still there");
        ErrnoException e = assertThrows(ErrnoException.class, () -> machine.attachment(Core.class, m -> new Core("late")));
        assertEquals(Errno.ENODEV, e.errno());
        assertEquals(List.of("other", "core"), closed, "nothing was made after close");
    }

    @Test
    void aFactoryThatMakesNothingOrTheWrongTypeKeepsNothing() {
        ErrnoException none = assertThrows(ErrnoException.class, () -> machine.attachment(Core.class, m -> null));
        assertEquals(Errno.EINVAL, none.errno());
        assertTrue(none.getMessage().contains("made nothing"), none.getMessage());
        @SuppressWarnings({"unchecked", "rawtypes"})
        Class<Core> lie = (Class) OtherCore.class;
        ErrnoException wrong = assertThrows(ErrnoException.class, () -> machine.attachment(lie, m -> new Core("core")));
        assertEquals(Errno.EINVAL, wrong.errno());
        assertTrue(wrong.getMessage().contains(Core.class.getName()), wrong.getMessage());

        Core core = machine.attachment(Core.class, m -> new Core("core"));
        assertSame(core, machine.attachment(Core.class, m -> null), "the refused calls kept nothing");
        assertTrue(closed.isEmpty(), "nothing made by a refused call is left to close");
    }

    @Test
    void aFailingCloseIsReportedAfterTheMachineIsDown() {
        machine.attachment(Core.class, m -> new Core("core"));
        machine.attachment(AutoCloseable.class, m -> () -> {
            throw new IllegalStateException("broken core");
        });

        ErrnoException e = assertThrows(ErrnoException.class, machine::close);

        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("broken core"), e.getMessage());
        assertEquals(List.of("core"), closed, "the other attachment still closed");
        assertTrue(machine.memory().isClosed(), "the machine went down all the same");
        machine.close();
    }

    /** Bad arguments are errnos, not NullPointerExceptions (issue 15's rule for every public entry point). */
    @Test
    void nullTypeOrFactoryIsEinval() {
        try (Machine m = Machine.bootDefault()) {
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> m.attachment(null, x -> "a")).errno());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> m.attachment(String.class, null)).errno());
        }
    }
}
