package dev.dmaplane.vfio;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.vfio.uapi.IoctlTable;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.dmaplane.vfio.VfioTestMachine.fails;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The byte-level ioctl layer: command numbers as include/uapi/linux/vfio.h builds them ({@code _IO(VFIO_TYPE,
 * VFIO_BASE + n)}), and the argument checks of the kernel's handlers in the order they run: {@code copy_from_user}
 * of {@code minsz} (EFAULT), {@code argsz < minsz} (EINVAL), {@code copy_struct_from_user}'s non-zero tail (E2BIG,
 * lib/usercopy.c, where a command uses it) or a tail never read ({@code copy_from_user(minsz)}, as
 * drivers/vfio/vfio_iommu_type1.c does), unknown flags (the command's errno), and {@code ENOTTY} for an unknown
 * command; the container's own answers follow drivers/vfio/container.c.
 */
class IoctlLayerTest {
    private final Machine machine = VfioTestMachine.boot();
    private final VfioUser user = Vfio.of(machine).open(machine.newAddressSpace("user"), 1 << 20);
    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void close() {
        arena.close();
        user.close();
        machine.close();
    }

    @Test
    void commandNumbersAreTheKernelsIoNumbers() {
        assertEquals(0x3b64, VFIO_GET_API_VERSION);
        assertEquals(0x3b65, VFIO_CHECK_EXTENSION);
        assertEquals(0x3b6a, VFIO_GROUP_GET_DEVICE_FD);
        assertEquals(0x3b70, VFIO_IOMMU_GET_INFO);
        assertEquals(0x3b71, VFIO_IOMMU_MAP_DMA);
        assertEquals(0x3b72, VFIO_IOMMU_UNMAP_DMA);
        assertEquals(32, VfioLayouts.DMA_MAP.byteSize());
        assertEquals(24, VfioLayouts.IOMMU_TYPE1_INFO.byteSize());
        assertEquals(32, VfioLayouts.REGION_INFO.byteSize());
    }

    /** container.c: VFIO_GET_API_VERSION and VFIO_CHECK_EXTENSION asked of the type 1 driver with none set. */
    @Test
    void containerAnswersVersionAndExtensions() {
        int c = user.openContainer();
        assertEquals(VFIO_API_VERSION, user.ioctl(c, VFIO_GET_API_VERSION, 0));
        assertEquals(1, user.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
        assertEquals(1, user.ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL));
        assertEquals(0, user.ioctl(c, VFIO_CHECK_EXTENSION, 2), "sPAPR TCE is not this machine's IOMMU");
        assertEquals(0, user.ioctl(c, VFIO_CHECK_EXTENSION, 12345));
    }

    /** container.c vfio_fops_unl_ioctl: with no IOMMU driver, an unknown command is EINVAL (ret's initial value). */
    @Test
    void containerWithoutIommuAnswersUnknownCommandsEinval() {
        int c = user.openContainer();
        fails(Errno.EINVAL, () -> user.ioctl(c, io(VFIO_TYPE, VFIO_BASE + 60), 0));
        fails(Errno.EINVAL, () -> user.ioctl(c, VFIO_IOMMU_MAP_DMA, arena.allocate(32)));
        assertTrue(fails(Errno.EINVAL, () -> user.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)).getMessage().contains("group"));
    }

    @Test
    void closedOrUnknownDescriptorsAreEbadf() {
        int c = user.openContainer();
        assertTrue(user.isOpen(c));
        user.close(c);
        assertFalse(user.isOpen(c));
        fails(Errno.EBADF, () -> user.ioctl(c, VFIO_GET_API_VERSION, 0));
        fails(Errno.EBADF, () -> user.close(c));
        assertEquals(c, user.openContainer(), "the lowest free descriptor is reused");
    }

    private static final int STRUCT_CMD = io(VFIO_TYPE, VFIO_BASE + 40);
    private static final int COPY_STRUCT_CMD = io(VFIO_TYPE, VFIO_BASE + 41);

    /** A file with one command of each tail rule: a 24-byte structure whose minsz is 16, flags 0x3 known. */
    private static IoctlTable table() {
        IoctlTable t = IoctlTable.enotty("test file")
                .struct(STRUCT_CMD, "STRUCT", 16, 0x3, Errno.EINVAL, (arg, v) -> {
                    arg.set(VfioLayouts.U64, 8, 0x1122_3344_5566_7788L);
                    return 0;
                });
        return t.add(new IoctlTable.Command(COPY_STRUCT_CMD, "COPY_STRUCT", IoctlTable.Arg.STRUCT, 16, 24, 0x3,
                Errno.EOPNOTSUPP, IoctlTable.Tail.COPY_STRUCT, (arg, v) -> 7));
    }

    private MemorySegment struct(long size, int argsz, int flags) {
        MemorySegment s = arena.allocate(size);
        s.set(VfioLayouts.U32, 0, argsz);
        s.set(VfioLayouts.U32, 4, flags);
        return s;
    }

    @Test
    void argumentChecksInTheKernelsOrder() {
        IoctlTable t = table();
        fails(Errno.ENOTTY, () -> t.dispatch(io(VFIO_TYPE, VFIO_BASE + 42), struct(16, 16, 0)));
        fails(Errno.EFAULT, () -> t.dispatch(STRUCT_CMD, (MemorySegment) null));
        fails(Errno.EFAULT, () -> t.dispatch(STRUCT_CMD, struct(8, 16, 0)), "shorter than minsz");
        fails(Errno.EFAULT, () -> t.dispatch(STRUCT_CMD, 0x1000L), "a number is no pointer");
        assertTrue(fails(Errno.EINVAL, () -> t.dispatch(STRUCT_CMD, struct(16, 15, 0))).getMessage().contains("argsz 15"));
        fails(Errno.EINVAL, () -> t.dispatch(STRUCT_CMD, struct(16, 16, 0x4)));
        fails(Errno.EOPNOTSUPP, () -> t.dispatch(COPY_STRUCT_CMD, struct(16, 16, 0x8)));
        MemorySegment ok = struct(16, 16, 0x3);
        assertEquals(0, t.dispatch(STRUCT_CMD, ok));
        assertEquals(0x1122_3344_5566_7788L, ok.get(VfioLayouts.U64, 8), "the handler wrote back");
    }

    @Test
    void aNonZeroTailIsE2bigOnlyWhereTheKernelUsesCopyStructFromUser() {
        IoctlTable t = table();
        MemorySegment big = struct(40, 40, 0);
        big.set(ValueLayout.JAVA_BYTE, 30, (byte) 1);
        assertEquals(0, t.dispatch(STRUCT_CMD, big), "copy_from_user(minsz) never reads the tail");
        assertTrue(fails(Errno.E2BIG, () -> t.dispatch(COPY_STRUCT_CMD, big)).getMessage().contains("at 30"));
        big.set(ValueLayout.JAVA_BYTE, 30, (byte) 0);
        assertEquals(7, t.dispatch(COPY_STRUCT_CMD, big), "a zero tail is accepted");
        fails(Errno.EFAULT, () -> t.dispatch(COPY_STRUCT_CMD, struct(24, 64, 0)), "argsz past the buffer");
    }

    @Test
    void aWriteBackPastTheUsersBufferIsEfault() {
        IoctlTable t = IoctlTable.enotty("test file").struct(STRUCT_CMD, "STRUCT", 8, -1, Errno.EINVAL,
                (arg, v) -> {
                    arg.set(VfioLayouts.U64, 8, 1);
                    return 0;
                });
        fails(Errno.EFAULT, () -> t.dispatch(STRUCT_CMD, struct(8, 8, 0)));
    }
}
