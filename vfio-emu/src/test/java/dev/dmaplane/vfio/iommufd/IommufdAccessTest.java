package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static dev.dmaplane.vfio.iommufd.IommufdUapi.IOMMU_IOAS_MAP_FIXED_IOVA;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.IOMMU_IOAS_MAP_READABLE;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.IOMMU_IOAS_MAP_WRITEABLE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code struct iommufd_access}, the in-kernel user an emulated (mdev-style) device's driver holds, as
 * drivers/iommu/iommufd/device.c has it ({@code iommufd_access_create}, {@code _attach}, {@code _detach},
 * {@code _pin_pages}, {@code _unpin_pages}, {@code _rw}, {@code iommufd_access_notify_unmap} calling
 * {@code iommufd_access_ops.unmap}) with io_pagetable.c's {@code iopt_unmap_iova_range}: an area an access has
 * pinned is marked {@code prevent_access} and the accesses are told to unmap it; while pins stay it is tried again,
 * and when {@code tries} passes 100 the unmap fails with {@code -EDEADLOCK} (EDEADLK on x86-64), not the EBUSY the
 * issue assumed (EBUSY there is for an area another object locked, {@code num_locks}). Real bytes go through
 * {@code access_rw} and the pinned pages; nothing stays pinned at the end.
 */
class IommufdAccessTest {
    private static final long MIB = 1 << 20;
    private static final long PAGE = 4096;
    private static final long IOVA = 0x10_0000;
    private static final int RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
    private static final int RO = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA;

    private final Machine machine = Machine.boot(TopologyLoader.load(TopologyLoader.defaultMachineText(),
            TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Iommufd fd = Iommufd.open(user);
    private final long pinsBefore = machine.memory().pinsOutstanding();
    private final long va = mm.mmapAnonymous(MIB, Prot.PROT_READ | Prot.PROT_WRITE);
    private final int ioas = fd.ioasAlloc();

    /** A driver that unpins what it pinned when told to unmap it, unless told to misbehave. */
    private class Driver implements IommufdAccess.Ops {
        final List<long[]> unmaps = new ArrayList<>();
        final List<long[]> pinned = new ArrayList<>();
        boolean unpins = true;
        IommufdAccess access;

        long[] pin(long iova, long length, int flags) {
            long[] phys = access.pinPages(iova, length, flags);
            pinned.add(new long[]{iova, length});
            return phys;
        }

        @Override
        public void unmap(long iova, long length) {
            unmaps.add(new long[]{iova, length});
            if (!unpins) {
                return;
            }
            for (long[] p : List.copyOf(pinned)) {
                if (Long.compareUnsigned(p[0] + p[1] - 1, iova) >= 0
                        && Long.compareUnsigned(p[0], iova + length - 1) <= 0) {
                    access.unpinPages(p[0], p[1]);
                    pinned.remove(p);
                }
            }
        }
    }

    private Driver driver() {
        Driver d = new Driver();
        d.access = user.iommufdAccess(fd.fd(), d);
        return d;
    }

    @AfterEach
    void close() {
        user.close();
        assertEquals(0, vfio.pinnedPages(), "iommufd pins nothing after close");
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        mm.close();
        machine.close();
    }

    private static ErrnoException fails(Errno errno, Runnable call, String what) {
        ErrnoException e = assertThrows(ErrnoException.class, call::run, what);
        assertEquals(errno, e.errno(), what + ": " + e.getMessage());
        return e;
    }

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void accessRwAndPinnedPagesReachTheUsersBytes() {
        fd.map(ioas, va, 4 * PAGE, IOVA, RW);
        byte[] data = random((int) (4 * PAGE), 5);
        mm.write(va, MemorySegment.ofArray(data));
        Driver d = driver();
        d.access.attach(ioas);
        assertEquals(ioas, d.access.ioas());

        byte[] got = new byte[6000];
        d.access.rw(IOVA + 100, MemorySegment.ofArray(got), IommufdAccess.RW_READ);
        assertArrayEquals(Arrays.copyOfRange(data, 100, 6100), got, "access_rw reads across a page boundary");
        byte[] put = random(5000, 6);
        d.access.rw(IOVA + 3 * PAGE - 2500, MemorySegment.ofArray(put), IommufdAccess.RW_WRITE);
        byte[] seen = new byte[5000];
        mm.read(va + 3 * PAGE - 2500, MemorySegment.ofArray(seen));
        assertArrayEquals(put, seen, "access_rw writes land in the user's memory");

        long[] phys = d.pin(IOVA + PAGE, PAGE + 1, IommufdAccess.RW_WRITE);
        assertEquals(2, phys.length, "one address per page the range touches");
        MemorySegment page = MemorySegment.ofArray(new byte[(int) PAGE]);
        machine.memory().read(phys[1], page);
        byte[] expect = new byte[(int) PAGE];
        mm.read(va + 2 * PAGE, MemorySegment.ofArray(expect));
        assertArrayEquals(expect, page.toArray(ValueLayout.JAVA_BYTE), "the pinned page is the user's page");
        machine.memory().write(phys[0], MemorySegment.ofArray(new byte[]{42}));
        byte[] one = new byte[1];
        mm.read(va + PAGE, MemorySegment.ofArray(one));
        assertEquals(42, one[0], "a store through the pinned page is seen by the user");
        d.access.unpinPages(IOVA + PAGE, PAGE + 1);
        d.pinned.clear();
        d.access.destroy();
        assertTrue(d.unmaps.stream().anyMatch(u -> u[0] == 0 && u[1] == -1L), "detach tells the driver to unmap all");
        assertEquals(4 * PAGE, fd.unmap(ioas, IOVA, 4 * PAGE));
    }

    @Test
    void ioasUnmapCallsTheDriverWhichUnpins() {
        fd.map(ioas, va, 2 * PAGE, IOVA, RW);
        fd.map(ioas, va + 2 * PAGE, 2 * PAGE, IOVA + 2 * PAGE, RW);
        Driver d = driver();
        d.access.attach(ioas);
        d.pin(IOVA + PAGE, PAGE, IommufdAccess.RW_READ);
        assertEquals(4 * PAGE, fd.unmap(ioas, IOVA, 4 * PAGE), "the unmap goes through once the driver unpinned");
        assertEquals(1, d.unmaps.size(), "one callback, for the pinned area only");
        assertArrayEquals(new long[]{IOVA, 2 * PAGE}, d.unmaps.getFirst(), "the area's IOVA and length");
        assertTrue(d.pinned.isEmpty());
        fails(Errno.ENOENT, () -> d.access.pinPages(IOVA, PAGE, IommufdAccess.RW_READ), "nothing mapped there now");

        fd.map(ioas, va, 2 * PAGE, IOVA, RW);
        d.pin(IOVA, 2 * PAGE, IommufdAccess.RW_WRITE);
        assertEquals(2 * PAGE, fd.unmap(ioas, 0, -1L), "0..U64_MAX tells the driver too");
        assertEquals(2, d.unmaps.size());
        d.access.destroy();
    }

    @Test
    void pagesStillPinnedFailTheUnmapWithEdeadlockAfter100Tries() {
        fd.map(ioas, va, 2 * PAGE, IOVA, RW);
        Driver d = driver();
        d.access.attach(ioas);
        d.pin(IOVA, PAGE, IommufdAccess.RW_READ);
        d.unpins = false;
        ErrnoException e = fails(Errno.EDEADLK, () -> fd.unmap(ioas, IOVA, 2 * PAGE), "a driver that never unpins");
        assertTrue(e.getMessage().contains("EDEADLOCK"), e.getMessage());
        assertEquals(101, d.unmaps.size(), "called until tries passed 100 (iopt_unmap_iova_range)");
        fails(Errno.EINVAL, () -> d.access.pinPages(IOVA + PAGE, PAGE, IommufdAccess.RW_READ),
                "the area stays prevent_access: no new pin");
        fails(Errno.EINVAL, () -> d.access.rw(IOVA, MemorySegment.ofArray(new byte[8]), IommufdAccess.RW_READ),
                "nor a copy through it");
        d.unpins = true;
        assertEquals(2 * PAGE, fd.unmap(ioas, IOVA, 2 * PAGE), "unpinned at last, the area goes");
        d.access.destroy();
    }

    /**
     * {@code iopt_unmap_iova_range} drops {@code iova_rwsem} and {@code domains_rwsem} before
     * {@code iommufd_access_notify_unmap} calls {@code ops->unmap}, so a driver whose callback has a worker thread
     * unpin (and waits for it) lets the unmap finish. Were the context's lock held across the callback, the worker
     * would block on it and the bounded wait would time out, the unmap failing with EDEADLOCK.
     */
    @Test
    void theUnmapCallbackMayUnpinOnAnotherThread() throws Exception {
        fd.map(ioas, va, 2 * PAGE, IOVA, RW);
        fd.map(ioas, va + 2 * PAGE, 2 * PAGE, IOVA + 2 * PAGE, RW);
        ExecutorService worker = Executors.newSingleThreadExecutor(r -> new Thread(r, "unpin worker"));
        List<String> timeouts = new ArrayList<>();
        Driver d = new Driver() {
            @Override
            public void unmap(long iova, long length) {
                if (!timeouts.isEmpty()) {
                    return;
                }
                try {
                    worker.submit(() -> super.unmap(iova, length)).get(5, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    timeouts.add(Thread.currentThread().getName() + ": the worker's unpin did not finish in 5 s");
                } catch (InterruptedException | ExecutionException e) {
                    throw new IllegalStateException(e);
                }
            }
        };
        try {
            d.access = user.iommufdAccess(fd.fd(), d);
            d.access.attach(ioas);
            d.pin(IOVA, PAGE, IommufdAccess.RW_READ);
            d.pin(IOVA + 3 * PAGE, PAGE, IommufdAccess.RW_WRITE);
            long unmapped = -1;
            try {
                unmapped = fd.unmap(ioas, IOVA, 4 * PAGE);
            } catch (ErrnoException e) {
                timeouts.add(e.getMessage());
            }
            assertEquals(List.of(), timeouts, "the worker unpinned while the unmap waited");
            assertEquals(4 * PAGE, unmapped, "both pinned areas went");
            assertTrue(d.pinned.isEmpty());
            assertEquals(2, d.unmaps.size(), "one callback per pinned area");
            d.access.destroy();
        } finally {
            worker.shutdown();
            assertTrue(worker.awaitTermination(10, TimeUnit.SECONDS), "the worker ends");
        }
    }

    /**
     * {@code iommufd_access_detach} and {@code iommufd_access_destroy} ({@code iommufd_access_change_ioas} in
     * drivers/iommu/iommufd/device.c) set {@code access->ioas} to NULL, which refuses further pins (ENOENT; ENODEV
     * once destroyed here), and drop
     * {@code ioas_lock} around {@code ops->unmap(0, ULONG_MAX)}, the only callback they make; unpins still reach the
     * IOAS through {@code ioas_unpin}. So a driver whose callback has a worker unpin, and waits for it, detaches
     * and is destroyed; with the context's lock held across the callback the worker would block on it and the
     * bounded wait time out.
     */
    @Test
    void detachAndDestroyLetTheUnmapCallbackUnpinOnAnotherThread() throws Exception {
        fd.map(ioas, va, 4 * PAGE, IOVA, RW);
        ExecutorService worker = Executors.newSingleThreadExecutor(r -> new Thread(r, "unpin worker"));
        List<String> problems = new ArrayList<>();
        boolean[] destroying = {false};
        Driver d = new Driver() {
            @Override
            public void unmap(long iova, long length) {
                try {
                    access.pinPages(IOVA, PAGE, IommufdAccess.RW_READ);
                    problems.add("a pin during the detach's unmap callback was allowed");
                } catch (ErrnoException e) {
                    Errno expected = destroying[0] ? Errno.ENODEV : Errno.ENOENT;
                    if (e.errno() != expected) {
                        problems.add("a pin during the callback: " + e.errno() + ", not " + expected);
                    }
                }
                if (!destroying[0]) { // iommufd_access_change_ioas: a detach in progress makes an attach EBUSY
                    try {
                        access.attach(ioas);
                        problems.add("an attach during the detach's unmap callback was allowed");
                    } catch (ErrnoException e) {
                        if (e.errno() != Errno.EBUSY) {
                            problems.add("an attach during the detach: " + e.errno() + ", not EBUSY");
                        }
                    }
                }
                try {
                    worker.submit(() -> super.unmap(iova, length)).get(5, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    problems.add(Thread.currentThread().getName() + ": the worker's unpin did not finish in 5 s");
                } catch (InterruptedException | ExecutionException e) {
                    throw new IllegalStateException(e);
                }
            }
        };
        try {
            d.access = user.iommufdAccess(fd.fd(), d);
            d.access.attach(ioas);
            d.pin(IOVA, PAGE, IommufdAccess.RW_READ);
            d.pin(IOVA + 2 * PAGE, 2 * PAGE, IommufdAccess.RW_WRITE);
            d.access.detach();
            assertEquals(List.of(), problems, "detach: the worker unpinned while the callback waited");
            assertTrue(d.pinned.isEmpty(), "every pin undone by the worker");
            assertEquals(0, d.access.ioas());

            d.access.attach(ioas);
            d.pin(IOVA + PAGE, PAGE, IommufdAccess.RW_WRITE);
            destroying[0] = true;
            d.access.destroy();
            assertEquals(List.of(), problems, "destroy: the worker unpinned while the callback waited");
            assertTrue(d.pinned.isEmpty());
            assertEquals(2, d.unmaps.size(), "one unmap of the whole space each");
            assertEquals(4 * PAGE, fd.unmap(ioas, IOVA, 4 * PAGE), "nothing holds the IOAS's pages");
            fd.destroy(ioas);
        } finally {
            worker.shutdown();
            assertTrue(worker.awaitTermination(10, TimeUnit.SECONDS), "the worker ends");
        }
    }

    @Test
    void eachErrnoOfTheAccessCalls() {
        fd.map(ioas, va, 2 * PAGE, IOVA, RW);
        fd.map(ioas, va + 4 * PAGE, PAGE, IOVA + 4 * PAGE, RO);
        fails(Errno.EINVAL, () -> user.iommufdAccess(fd.fd(), null), "no ops");
        fails(Errno.EBADF, () -> user.iommufdAccess(99, (i, l) -> { }), "no such descriptor");
        int memfd = user.openEventfd();
        fails(Errno.EBADFD, () -> user.iommufdAccess(memfd, (i, l) -> { }), "not /dev/iommu");
        Driver d = driver();
        IommufdAccess a = d.access;
        fails(Errno.ENOENT, () -> a.pinPages(IOVA, PAGE, IommufdAccess.RW_READ), "not attached");
        fails(Errno.ENOENT, () -> a.rw(IOVA, MemorySegment.ofArray(new byte[1]), IommufdAccess.RW_READ),
                "rw not attached");
        fails(Errno.ENOENT, a::detach, "detach when not attached");
        fails(Errno.ENOENT, () -> a.attach(77), "no IOAS 77");
        a.attach(ioas);
        fails(Errno.EINVAL, () -> a.attach(ioas), "attached already");
        fails(Errno.EBUSY, () -> fd.destroy(ioas), "the IOAS is held by the access");
        fails(Errno.EBUSY, () -> fd.destroy(a.id()), "the access is held by its driver");
        fails(Errno.EINVAL, () -> a.pinPages(IOVA, 0, IommufdAccess.RW_READ), "length 0");
        fails(Errno.EOVERFLOW, () -> a.pinPages(-PAGE, 2 * PAGE, IommufdAccess.RW_READ), "wraps");
        fails(Errno.EINVAL, () -> a.pinPages(IOVA + 8, PAGE, IommufdAccess.RW_READ), "not page-aligned");
        fails(Errno.EINVAL, () -> a.pinPages(IOVA, PAGE, 4), "an unknown flag");
        fails(Errno.ENOENT, () -> a.pinPages(IOVA + PAGE, 2 * PAGE, IommufdAccess.RW_READ), "runs into a hole");
        fails(Errno.EPERM, () -> a.pinPages(IOVA + 4 * PAGE, PAGE, IommufdAccess.RW_WRITE), "write, read-only area");
        fails(Errno.EPERM, () -> a.rw(IOVA + 4 * PAGE, MemorySegment.ofArray(new byte[4]), IommufdAccess.RW_WRITE),
                "rw write, read-only area");
        byte[] before = new byte[16];
        mm.read(va + 2 * PAGE - 8, MemorySegment.ofArray(before));
        fails(Errno.ENOENT, () -> a.rw(IOVA + 2 * PAGE - 8, MemorySegment.ofArray(random(16, 9)),
                IommufdAccess.RW_WRITE), "a write running into a hole");
        byte[] after = new byte[16];
        mm.read(va + 2 * PAGE - 8, MemorySegment.ofArray(after));
        assertArrayEquals(before, after, "nothing copied before the hole");
        fails(Errno.EINVAL, () -> a.unpinPages(IOVA, PAGE), "no such pin");
        d.pin(IOVA, PAGE, IommufdAccess.RW_READ);
        fails(Errno.EINVAL, () -> a.unpinPages(IOVA, 2 * PAGE), "not the range pinned");
        assertEquals(PAGE, fd.unmap(ioas, IOVA + 4 * PAGE, PAGE), "an area nobody pinned goes without a callback");
        assertTrue(d.unmaps.isEmpty());
        a.destroy();
        a.destroy();
        fails(Errno.ENODEV, () -> a.attach(ioas), "destroyed");
        fails(Errno.ENOENT, () -> fd.destroy(a.id()), "its ID is gone");
        fd.destroy(ioas);
    }

    @Test
    void theAccessKeepsItsContextPastCloseAndDetachDropsLeftPins() {
        fd.map(ioas, va, 2 * PAGE, IOVA, RW);
        Driver d = driver();
        d.access.attach(ioas);
        d.pin(IOVA, 2 * PAGE, IommufdAccess.RW_WRITE);
        fd.close();
        byte[] b = new byte[8];
        d.access.rw(IOVA, MemorySegment.ofArray(b), IommufdAccess.RW_READ);
        d.unpins = false;
        d.access.detach();
        assertEquals(0, d.access.ioas());
        assertArrayEquals(new long[]{0, -1L}, d.unmaps.getLast(), "detach: unmap of the whole space");
        d.access.destroy();
        assertEquals(0, vfio.pinnedPages(), "the last reference closed the context and unpinned its IOAS");
    }
}
