package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.IovaRange;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

import static dev.dmaplane.vfio.VfioLayouts.U32;
import static dev.dmaplane.vfio.VfioLayouts.U64;
import static dev.dmaplane.vfio.VfioLayouts.setU32;
import static dev.dmaplane.vfio.VfioLayouts.setU64;
import static dev.dmaplane.vfio.VfioLayouts.u32;
import static dev.dmaplane.vfio.VfioUapi.io;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code /dev/iommu} and its IOAS, as drivers/iommu/iommufd/main.c ({@code iommufd_fops_ioctl}: ENOTTY, the
 * {@code min_size} EINVAL, {@code copy_struct_from_user}'s E2BIG, {@code iommufd_get_object}'s ENOENT,
 * {@code iommufd_destroy}), ioas.c ({@code iommufd_ioas_map}, {@code _unmap}, {@code _copy}, {@code _iova_ranges}
 * with EMSGSIZE, {@code _allow_iovas}) and io_pagetable.c ({@code iopt_alloc_iova}, {@code iopt_check_iova},
 * {@code iopt_unmap_iova_range}'s ENOENT for a split, {@code iopt_unmap_all}) answer, with the errno meanings of
 * include/uapi/linux/iommufd.h and Documentation/userspace-api/iommufd.rst; pins are charged to {@code locked_vm}
 * against RLIMIT_MEMLOCK and nothing stays pinned after close.
 */
class IoasTest {
    private static final long MIB = 1 << 20;
    private static final int RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    private static final int FIXED_RW = RW | IOMMU_IOAS_MAP_FIXED_IOVA;

    private final Machine machine = Machine.boot(TopologyLoader.load(TopologyLoader.defaultMachineText(),
            TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Iommufd fd = Iommufd.open(user);
    private final Arena arena = Arena.ofConfined();
    private final long pinsBefore = machine.memory().pinsOutstanding();

    @AfterEach
    void close() {
        arena.close();
        user.close();
        assertEquals(0, vfio.pinnedPages(), "iommufd pins nothing after close");
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        assertEquals(0, user.lockedBytes(), "locked_vm back to 0");
        mm.close();
        machine.close();
    }

    private static ErrnoException fails(Errno errno, Runnable call, String what) {
        ErrnoException e = assertThrows(ErrnoException.class, call::run, what);
        assertEquals(errno, e.errno(), what + ": " + e.getMessage());
        return e;
    }

    private MemorySegment mapArg(int ioas, long uptr, long length, long iova, int flags) {
        MemorySegment m = arena.allocate(IOAS_MAP);
        setU32(m, IOAS_MAP, "size", (int) IOAS_MAP.byteSize());
        setU32(m, IOAS_MAP, "flags", flags);
        setU32(m, IOAS_MAP, "ioas_id", ioas);
        setU64(m, IOAS_MAP, "user_va", uptr);
        setU64(m, IOAS_MAP, "length", length);
        setU64(m, IOAS_MAP, "iova", iova);
        return m;
    }

    @Test
    void theIoctlLayoutRules() {
        fails(Errno.ENOTTY, () -> user.ioctl(fd.fd(), io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 0x40), arena.allocate(64)),
                "no such command");
        MemorySegment alloc = arena.allocate(64);
        setU32(alloc, IOAS_ALLOC, "size", 11);
        fails(Errno.EINVAL, () -> user.ioctl(fd.fd(), IOMMU_IOAS_ALLOC, alloc), "size below min_size");
        fails(Errno.EFAULT, () -> user.ioctl(fd.fd(), IOMMU_IOAS_ALLOC, arena.allocate(8)), "a buffer of 8 bytes");
        setU32(alloc, IOAS_ALLOC, "size", 64);
        alloc.set(U32, 40, 1);
        assertEquals(Errno.E2BIG, assertThrows(ErrnoException.class,
                () -> user.ioctl(fd.fd(), IOMMU_IOAS_ALLOC, alloc)).errno(), "a non-zero byte past the structure");
        alloc.set(U32, 40, 0);
        alloc.set(U32, 8, 0xdead);
        user.ioctl(fd.fd(), IOMMU_IOAS_ALLOC, alloc);
        assertEquals(1, u32(alloc, IOAS_ALLOC, "out_ioas_id"), "a larger zero-tailed structure; IDs from 1");
        assertEquals(0, alloc.get(U32, 12), "the response stops at the kernel's structure");
        setU32(alloc, IOAS_ALLOC, "flags", 1);
        fails(Errno.EOPNOTSUPP, () -> user.ioctl(fd.fd(), IOMMU_IOAS_ALLOC, alloc), "unknown flag");
        long va = mm.mmapAnonymous(MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        fails(Errno.ENOENT, () -> fd.map(7, va, 4096, 0x10000, FIXED_RW), "no IOAS 7");
        fails(Errno.ENOENT, () -> fd.destroy(7), "destroy of no object");
        MemorySegment m = mapArg(1, va, 4096, 0x10000, FIXED_RW);
        m.set(U32, 12, 1);
        fails(Errno.EOPNOTSUPP, () -> user.ioctl(fd.fd(), IOMMU_IOAS_MAP, m), "__reserved set");
        fd.destroy(1);
        fails(Errno.ENOENT, () -> fd.map(1, va, 4096, 0x10000, FIXED_RW), "destroyed");
        assertEquals(1, fd.ioasAlloc(), "the lowest free ID again");
    }

    @Test
    void mapErrnosInTheKernelsOrder() {
        int ioas = fd.ioasAlloc();
        long va = mm.mmapAnonymous(4 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        long ro = mm.mmapAnonymous(MIB, Prot.PROT_READ);
        fails(Errno.EOPNOTSUPP, () -> fd.map(ioas, va, 4096, 0x10000, FIXED_RW | 0x8), "unknown flag");
        fails(Errno.EOVERFLOW, () -> fd.map(ioas, va, -1L, 0x10000, FIXED_RW), "length ULONG_MAX");
        fails(Errno.EOVERFLOW, () -> fd.map(ioas, va, 4096, -1L, FIXED_RW), "iova ULONG_MAX");
        fails(Errno.EINVAL, () -> fd.map(ioas, va, 4096, 0x10000, IOMMU_IOAS_MAP_FIXED_IOVA), "no READ/WRITE");
        fails(Errno.EINVAL, () -> fd.map(ioas, va, 0, 0x10000, FIXED_RW), "length 0");
        fails(Errno.EINVAL, () -> fd.map(ioas, va, 4097, 0x10000, FIXED_RW), "unaligned length");
        fails(Errno.EINVAL, () -> fd.map(ioas, va, 4096, 0x10800, FIXED_RW), "unaligned IOVA");
        fails(Errno.EINVAL, () -> fd.map(ioas, va + 8, 4096, 0x10000, FIXED_RW), "unaligned user_va");
        fails(Errno.EOVERFLOW, () -> fd.map(ioas, va, 8192, -4096L, FIXED_RW), "IOVA wraps");
        fails(Errno.EFAULT, () -> fd.map(ioas, 0x7000_0000L, 4096, 0x10000, FIXED_RW), "nothing mapped there");
        fails(Errno.EFAULT, () -> fd.map(ioas, ro, 4096, 0x10000, FIXED_RW), "writable map of read-only memory");
        assertEquals(0, vfio.pinnedPages(), "no refusal pinned anything");
        assertEquals(0, user.lockedBytes());

        assertEquals(0x10000, fd.map(ioas, va, 0x10000, 0x10000, FIXED_RW));
        assertEquals(16, vfio.pinnedPages());
        assertEquals(16 * 4096, user.lockedBytes(), "charged to locked_vm");
        fails(Errno.EEXIST, () -> fd.map(ioas, va + MIB, 8192, 0x1f000, FIXED_RW), "over the end of a mapping");
        fails(Errno.EEXIST, () -> fd.map(ioas, va + MIB, 8192, 0x0f000, FIXED_RW), "over its start");

        long picked = fd.map(ioas, va + MIB, 0x10000, 0, RW);
        assertNotEquals(0, picked, "the kernel never picks IOVA 0");
        assertEquals(0, picked % 0x10000, "aligned to the length");
        assertTrue(picked >= 0x20000 || picked + 0x10000 <= 0x10000, "clear of the first mapping: " + picked);
        long again = fd.map(ioas, va + 2 * MIB, 4096, 0, IOMMU_IOAS_MAP_READABLE);
        assertNotEquals(picked, again);

        user.setMemlockLimit(user.lockedBytes() + 4096);
        assertTrue(fails(Errno.ENOMEM, () -> fd.map(ioas, va + 3 * MIB, 8192, 0, RW), "over RLIMIT_MEMLOCK")
                .getMessage().contains("RLIMIT_MEMLOCK"));
        assertEquals(33, vfio.pinnedPages(), "the refusal pinned nothing");
        fd.map(ioas, va + 3 * MIB, 4096, 0, RW);
    }

    @Test
    void unmapNeverSplitsAndReportsTheBytes() {
        int ioas = fd.ioasAlloc();
        long va = mm.mmapAnonymous(4 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        fd.map(ioas, va, 0x10000, 0x100000, FIXED_RW);
        fd.map(ioas, va + 0x10000, 0x4000, 0x110000, FIXED_RW);
        fd.map(ioas, va + 0x20000, 0x2000, 0x200000, FIXED_RW);
        fails(Errno.ENOENT, () -> fd.unmap(ioas, 0x101000, 0x1000), "starts inside a mapping");
        fails(Errno.ENOENT, () -> fd.unmap(ioas, 0x100000, 0x11000), "ends inside one");
        fails(Errno.ENOENT, () -> fd.unmap(ioas, 0x300000, 0x1000), "nothing there");
        fails(Errno.EINVAL, () -> fd.unmap(ioas, 0x100000, 0), "length 0");
        fails(Errno.EOVERFLOW, () -> fd.unmap(ioas, -4096L, 8192), "wraps");
        fails(Errno.ENOENT, () -> fd.unmap(ioas + 1, 0x100000, 0x1000), "no such IOAS");
        assertEquals(0x16, vfio.pinnedPages(), "the refusals unmapped nothing");
        assertEquals(0x14000, fd.unmap(ioas, 0x0f0000, 0x30000), "two whole mappings in a larger range");
        assertEquals(2, vfio.pinnedPages());
        assertEquals(0x2000, fd.unmap(ioas, 0, -1L), "0..U64_MAX unmaps the rest");
        assertEquals(0, fd.unmap(ioas, 0, -1L), "and unmaps nothing without error when empty");
        assertEquals(0, user.lockedBytes());
    }

    @Test
    void copySharesThePinsAndRangesReportAndAllowIovas() {
        int a = fd.ioasAlloc();
        int b = fd.ioasAlloc();
        long va = mm.mmapAnonymous(MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        long ro = mm.mmapAnonymous(MIB, Prot.PROT_READ);
        fd.map(a, va, 0x8000, 0x100000, FIXED_RW);
        fd.map(a, va + 0x8000, 0x8000, 0x108000, FIXED_RW);
        fd.map(a, ro, 0x1000, 0x200000, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA);
        assertEquals(17, vfio.pinnedPages());
        assertEquals(0x400000, fd.copy(b, a, 0x104000, 0x8000, 0x400000, FIXED_RW), "across two mappings");
        assertEquals(17, vfio.pinnedPages(), "a copy pins nothing again");
        fails(Errno.ENOENT, () -> fd.copy(b, a, 0x110000, 0x1000, 0x500000, FIXED_RW), "source not mapped");
        fails(Errno.EPERM, () -> fd.copy(b, a, 0x200000, 0x1000, 0x500000, FIXED_RW), "writable copy of read-only");
        fails(Errno.EEXIST, () -> fd.copy(b, a, 0x100000, 0x1000, 0x404000, FIXED_RW), "over the copy");
        fails(Errno.ENOENT, () -> fd.copy(b + 5, a, 0x100000, 0x1000, 0x500000, FIXED_RW), "no destination");
        long picked = fd.copy(b, a, 0x200000, 0x1000, 0, IOMMU_IOAS_MAP_READABLE);
        assertNotEquals(0, picked);
        assertEquals(0x10000, fd.unmap(a, 0x100000, 0x10000), "the source's mappings go");
        assertEquals(17, vfio.pinnedPages(), "their pages stay pinned while the copy maps them");
        assertEquals(0x8000, fd.unmap(b, 0x400000, 0x8000));
        assertEquals(1, vfio.pinnedPages(), "released with the last area");

        assertEquals(List.of(new IovaRange(0, -1L)), fd.iovaRanges(a), "a fresh IOAS has the whole space");
        MemorySegment r = arena.allocate(IOAS_IOVA_RANGES);
        setU32(r, IOAS_IOVA_RANGES, "size", (int) IOAS_IOVA_RANGES.byteSize());
        setU32(r, IOAS_IOVA_RANGES, "ioas_id", a);
        fails(Errno.EMSGSIZE, () -> user.ioctl(fd.fd(), IOMMU_IOAS_IOVA_RANGES, r), "no room");
        assertEquals(1, u32(r, IOAS_IOVA_RANGES, "num_iovas"), "the count needed written back");
        assertEquals(4096, r.get(U64, 24), "out_iova_alignment");

        fails(Errno.EINVAL, () -> fd.allowIovas(a, List.of(new IovaRange(0x2000, 0x1000))), "start after last");
        fails(Errno.EINVAL, () -> fd.allowIovas(a, List.of(new IovaRange(0x1000_0000L, 0x1fff_ffffL),
                new IovaRange(0x1800_0000L, 0x2fff_ffffL))), "overlapping ranges");
        fd.allowIovas(a, List.of(new IovaRange(0x4000_0000L, 0x4fff_ffffL)));
        long in = fd.map(a, va, 0x4000, 0, RW);
        assertTrue(in >= 0x4000_0000L && in + 0x4000 <= 0x5000_0000L, "picked in the allowed range: " + in);
        assertEquals(0x9000_0000L, fd.map(a, va + 0x4000, 0x1000, 0x9000_0000L, FIXED_RW), "fixed IOVAs need not be");
        fd.allowIovas(a, List.of());
    }
}
