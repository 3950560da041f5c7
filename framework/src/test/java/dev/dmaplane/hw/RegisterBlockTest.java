package dev.dmaplane.hw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Register blocks as QEMU's {@code MemoryRegionOps} with {@code valid.min/max_access_size} declare them
 * ({@code docs/devel/memory.rst}): an access must hit a register at its width; holes and wrong widths read as
 * all-ones and drop writes, as unclaimed PCIe accesses do.
 */
class RegisterBlockTest {
    private final AtomicLong ctrl = new AtomicLong();
    private final List<Long> rung = new ArrayList<>();
    private final RegisterBlock regs = RegisterBlock.builder("acc0 BAR0")
            .constant("ID", 0x00, 4, 0x1da0_c0deL)
            .register("CTRL", 0x08, 8, ctrl::get, ctrl::set)
            .readOnly("STATUS", 0x10, 2, () -> 0x8001)
            .doorbell("DOORBELL", 0x18, 4, rung::add)
            .build();

    @Test
    void registersAnswerAtTheirWidth() {
        assertEquals(0x1da0_c0deL, regs.read(0x00, 4));
        regs.write(0x08, 8, 0xFFFF_0000_0000_0001L);
        assertEquals(0xFFFF_0000_0000_0001L, regs.read(0x08, 8));
        assertEquals(0x8001, regs.read(0x10, 2));
        regs.write(0x10, 2, 0);
        assertEquals(0x8001, regs.read(0x10, 2), "read-only registers drop writes");
        regs.write(0x00, 4, 5);
        assertEquals(0x1da0_c0deL, regs.read(0x00, 4));
        assertEquals(0x1C, regs.extent(), "to the end of the doorbell");
        assertEquals(0, regs.badAccesses());
    }

    @Test
    void aDoorbellHandsTheValueToTheDeviceAndReadsZero() {
        regs.write(0x18, 4, 7);
        regs.write(0x18, 4, 8);
        assertEquals(List.of(7L, 8L), rung);
        assertEquals(0, regs.read(0x18, 4));
    }

    @Test
    void holesAndWrongWidthsReadAllOnesAndDropWrites() {
        assertEquals(0xFFFF_FFFFL, regs.read(0x04, 4), "a hole");
        assertEquals(0xFFFFL, regs.read(0x00, 2), "ID is a 32-bit register");
        assertEquals(-1L, regs.read(0x20, 8), "past the last register");
        regs.write(0x08, 4, 0x55);
        assertEquals(0, ctrl.get(), "a 4-byte write to an 8-byte register is dropped");
        regs.write(0x18, 8, 1);
        assertEquals(List.of(), rung);
        assertEquals(5, regs.badAccesses());
    }

    @Test
    void badDeclarationsAreEinvalNamingTheRegister() {
        assertRefused("width 3", RegisterBlock.builder("b").constant("ODD", 0, 3, 0));
        assertRefused("ODD at offset 0x4", RegisterBlock.builder("b").constant("ODD", 4, 8, 0));
        assertRefused("NEG at offset", RegisterBlock.builder("b").constant("NEG", -8, 8, 0));
        assertRefused("registers A (0x0, 8 bytes) and B (0x4, 4 bytes) overlap",
                RegisterBlock.builder("b").constant("A", 0, 8, 0).constant("B", 4, 4, 0));
        assertRefused("registers A (0x0, 4 bytes) and B (0x0, 4 bytes) overlap",
                RegisterBlock.builder("b").constant("A", 0, 4, 0).constant("B", 0, 4, 0));
        ErrnoException noCallback = assertThrows(ErrnoException.class,
                () -> RegisterBlock.builder("b").doorbell("DB", 0, 4, null));
        assertEquals(Errno.EINVAL, noCallback.errno());
        assertTrue(noCallback.getMessage().contains("DB needs a ring callback"), noCallback.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> RegisterBlock.builder(" ")).errno());
    }

    private static void assertRefused(String expected, RegisterBlock.Builder b) {
        ErrnoException e = assertThrows(ErrnoException.class, b::build);
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
