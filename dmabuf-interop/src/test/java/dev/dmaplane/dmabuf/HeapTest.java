package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.Udmabuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The system heap's size rules (drivers/dma-buf/dma-heap.c dma_heap_buffer_alloc: PAGE_ALIGN, 0 is EINVAL;
 * heaps/system_heap.c: large orders first, more than RAM is ENOMEM) and udmabuf's UDMABUF_CREATE rules
 * (drivers/dma-buf/udmabuf.c: page alignment, size_limit_mb, F_SEAL_SHRINK wanted, F_SEAL_WRITE and
 * F_SEAL_FUTURE_WRITE denied, shmem files only, pages pinned for the buffer's life).
 */
class HeapTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final DmaBufs bufs = DmaBufs.of(machine);
    private final HostMemory mem = machine.memory();
    private final PciFunction hca = machine.pci().function("05:00.0");

    @AfterEach
    void close() {
        machine.close();
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    @Test
    void systemHeapRoundsToPagesRefusesZeroAndFreesAtRelease() {
        SystemHeap heap = new SystemHeap(bufs);
        long before = mem.allocatedFrames();
        assertEquals(Errno.EINVAL, errno(() -> heap.allocate(0)));
        assertEquals(Errno.EINVAL, errno(() -> heap.allocate(-4096)));
        assertEquals(Errno.EINVAL, errno(() -> heap.allocate(Long.MAX_VALUE)), "PAGE_ALIGN overflows to 0");
        assertEquals(Errno.ENOMEM, errno(() -> heap.allocate(mem.size() + 4096)));
        assertEquals(before, mem.allocatedFrames(), "refused allocations take nothing");
        DmaBuf one = heap.allocate(1);
        assertEquals(4096, one.size());
        assertEquals(SystemHeap.NAME, one.exporterName());
        DmaBuf big = heap.allocate((1 << 20) + 4096 * 17 + 5);
        assertEquals((1 << 20) + 4096 * 18, big.size());
        assertEquals(before + 1 + 256 + 18, mem.allocatedFrames());

        byte[] zero = new byte[(int) big.size()];
        byte[] got = new byte[(int) big.size()];
        big.resv().lock();
        try {
            big.cpuRead(0, MemorySegment.ofArray(got));
            assertArrayEquals(zero, got, "heap memory is zeroed");
            big.cpuWrite(big.size() - 3, MemorySegment.ofArray(new byte[]{1, 2, 3}));
            assertEquals(Errno.EINVAL, errno(() -> big.cpuWrite(big.size() - 2, MemorySegment.ofArray(new byte[]{1, 2, 3}))));
        } finally {
            big.resv().unlock();
        }
        one.put();
        big.put();
        assertEquals(before, mem.allocatedFrames(), "release gave every page back");
    }

    private Inode memfd(String name, long size, int seals) {
        MemFs shm = machine.mount("shm-" + name, false);
        Inode f = shm.create("/memfd:" + name);
        f.write(0, MemorySegment.ofArray(new byte[(int) size]));
        if (seals != 0) {
            f.addSeals(seals);
        }
        return f;
    }

    @Test
    void udmabufRulesFollowUdmabufC() {
        Udmabuf u = new Udmabuf(bufs, 1 << 20);
        Inode ok = memfd("ok", 64 * 1024, Inode.F_SEAL_SHRINK);
        assertEquals(Errno.EINVAL, errno(() -> u.create(ok, 100, 4096)), "unaligned offset");
        assertEquals(Errno.EINVAL, errno(() -> u.create(ok, 0, 4000)), "unaligned size");
        assertEquals(Errno.EINVAL, errno(() -> u.create(ok, 0, 0)), "no pages");
        assertEquals(Errno.EINVAL, errno(() -> u.create(ok, 0, 2 << 20)), "past size_limit_mb");
        assertEquals(Errno.EINVAL, errno(() -> u.create(ok, 32 * 1024, 64 * 1024)), "past the end of the file");
        Inode noShrink = memfd("noshrink", 8192, 0);
        assertEquals(Errno.EINVAL, errno(() -> u.create(noShrink, 0, 8192)), "F_SEAL_SHRINK is wanted");
        Inode writeSealed = memfd("wseal", 8192, Inode.F_SEAL_SHRINK | Inode.F_SEAL_WRITE);
        assertEquals(Errno.EINVAL, errno(() -> u.create(writeSealed, 0, 8192)), "F_SEAL_WRITE is denied");
        Inode futureSealed = memfd("fseal", 8192, Inode.F_SEAL_SHRINK | Inode.F_SEAL_FUTURE_WRITE);
        assertEquals(Errno.EINVAL, errno(() -> u.create(futureSealed, 0, 8192)), "F_SEAL_FUTURE_WRITE is denied");
        Inode dax = machine.mount("pmem", true).create("/f");
        dax.write(0, MemorySegment.ofArray(new byte[8192]));
        assertEquals(Errno.EBADFD, errno(() -> u.create(dax, 0, 8192)), "not a shmem file");
        assertEquals(0, mem.pinsOutstanding(), "refused creates pin nothing");
        assertTrue(bufs.list().isEmpty());
    }

    @Test
    void udmabufPinsTheFilePagesWhichDevicesThenWrite() {
        Inode f = memfd("frames", 64 * 1024, Inode.F_SEAL_SHRINK);
        byte[] text = "bytes the CPU wrote into the memfd".getBytes();
        f.write(4096 + 10, MemorySegment.ofArray(text));
        DmaBuf buf = new Udmabuf(bufs).create(f, 4096, 16384);
        assertEquals(16384, buf.size());
        assertEquals(4, mem.pinsOutstanding(), "the four pages are pinned while the buffer lives");
        assertEquals(1, mem.pinCount(f.frameOf(1).orElseThrow()));
        assertEquals(Errno.EPERM, errno(() -> f.truncate(0)), "the shrink seal keeps the pages in the file");

        Attachment a = buf.attach(hca, null);
        DmaBufMapping m = buf.mapUnlocked(a, DmaDirection.BIDIRECTIONAL);
        hca.setMaster(true);
        byte[] seen = new byte[text.length];
        hca.dma().busMaster().read(m.busAddress(10), MemorySegment.ofArray(seen));
        assertArrayEquals(text, seen, "the device reads what was written to the file");
        hca.dma().busMaster().write(m.busAddress(8192), MemorySegment.ofArray("device".getBytes()));
        buf.unmapUnlocked(m);
        buf.detach(a);
        buf.put();
        assertEquals(0, mem.pinsOutstanding());
        byte[] back = new byte[6];
        f.read(4096 + 8192, MemorySegment.ofArray(back));
        assertEquals("device", new String(back), "the device's write reached the file");
        assertTrue(f.dirtyPages() > 0);
    }
}
