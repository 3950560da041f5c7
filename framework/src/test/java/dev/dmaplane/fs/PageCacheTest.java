package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * File I/O through the page cache: {@code generic_perform_write} and {@code filemap_read} in {@code mm/filemap.c},
 * writeback of dirty pages ({@code Documentation/filesystems/vfs.rst}, {@code writepages}), {@code drop_caches}
 * dropping only clean, unmapped, unpinned pages ({@code Documentation/admin-guide/sysctl/vm.rst},
 * {@code mapping_evict_folio} in {@code mm/truncate.c}), and truncate / hole punch zeroing partial pages
 * ({@code truncate_inode_pages_range} in {@code mm/truncate.c}).
 */
class PageCacheTest {
    private static final int PAGE = (int) HostMemory.PAGE_SIZE;
    private final HostMemory mem = new HostMemory(64L << 20);
    private final Tracer tracer = new Tracer();
    private final MemFs fs = new MemFs(mem, tracer, "memfs0", false);

    @AfterEach
    void tearDown() {
        mem.close();
    }

    private static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    private static byte[] readAll(Inode f, long off, int len) {
        byte[] b = new byte[len];
        long n = f.read(off, MemorySegment.ofArray(b));
        return Arrays.copyOf(b, (int) n);
    }

    @Test
    void writeThenReadAcrossPagesAndPastEof() {
        Inode f = fs.create("/f");
        byte[] data = pattern(3 * PAGE + 100, 7);
        assertEquals(data.length, f.write(50, MemorySegment.ofArray(data)));
        assertEquals(50 + data.length, f.size());
        assertArrayEquals(data, readAll(f, 50, data.length));
        assertArrayEquals(new byte[50], readAll(f, 0, 50));
        assertEquals(10, readAll(f, f.size() - 10, 100).length);
        assertEquals(0, f.read(f.size() + 5, MemorySegment.ofArray(new byte[4])));
        assertEquals(4, f.cachedPages());
        assertEquals(4, f.dirtyPages());
    }

    @Test
    void writebackDropCacheAndReadBackFromDisk() {
        Inode f = fs.create("/f");
        byte[] data = pattern(5 * PAGE, 3);
        f.write(0, MemorySegment.ofArray(data));
        long framesWithCache = mem.allocatedFrames();

        assertEquals(0, f.dropCache(), "dirty pages must not be dropped");
        assertEquals(5, f.writeback());
        assertEquals(0, f.dirtyPages());
        assertEquals(5, f.storedPages());
        assertEquals(0, f.writeback(), "nothing left to write");

        assertEquals(5, f.dropCache());
        assertEquals(0, f.cachedPages());
        assertEquals(framesWithCache - 5, mem.allocatedFrames());
        assertArrayEquals(data, readAll(f, 0, data.length), "bytes come back from the disk");
        assertEquals(5, f.cachedPages());
    }

    /**
     * A hole reads as the zero page with nothing allocated ({@code shmem_get_folio_gfp} with {@code SGP_READ} in
     * {@code mm/shmem.c}); a write afterwards allocates only the page it stores to.
     */
    @Test
    void readingAHoleAllocatesNothingAndAWriteAfterwardsStores() {
        Inode f = fs.create("/f");
        f.truncate(32L << 20);
        long frames = mem.allocatedFrames();
        byte[] chunk = new byte[1 << 20];
        for (long off = 0; off < f.size(); off += chunk.length) {
            Arrays.fill(chunk, (byte) 1);
            assertEquals(chunk.length, f.read(off, MemorySegment.ofArray(chunk)));
            assertArrayEquals(new byte[chunk.length], chunk, "offset " + off);
        }
        assertEquals(0, f.cachedPages());
        assertEquals(frames, mem.allocatedFrames());

        byte[] data = pattern(100, 4);
        f.write(5L * PAGE + 7, MemorySegment.ofArray(data));
        assertEquals(1, f.cachedPages());
        assertArrayEquals(data, readAll(f, 5L * PAGE + 7, data.length));
        byte[] around = readAll(f, 4L * PAGE, 3 * PAGE);
        assertArrayEquals(new byte[PAGE + 7], Arrays.copyOf(around, PAGE + 7));
        assertEquals(1, f.cachedPages(), "the holes beside the written page stay holes");
    }

    @Test
    void dropCacheKeepsMappedPages() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(pattern(2 * PAGE, 1)));
        f.fsync();
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 2 * PAGE, Prot.PROT_READ, true);
            as.read(va, MemorySegment.ofArray(new byte[8]));
            assertEquals(1, f.dropCache(), "only the unmapped second page goes");
            assertEquals(1, f.cachedPages());
        }
    }

    @Test
    void unflushedDataIsLostWhenNotWrittenBackButWrittenDataSurvivesDrop() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(pattern(PAGE, 9)));
        f.writeback();
        f.write(0, MemorySegment.ofArray(new byte[]{42}));
        assertEquals(1, f.dirtyPages());
        assertEquals(0, fs.dropCaches());
        assertEquals(1, fs.sync());
        assertEquals(1, fs.dropCaches());
        assertEquals(42, readAll(f, 0, 1)[0]);
    }

    @Test
    void truncateShrinkZeroesTailAndGrowingReadsZeroes() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(pattern(3 * PAGE, 5)));
        f.writeback();
        f.truncate(PAGE + 10);
        assertEquals(PAGE + 10, f.size());
        assertEquals(2, f.cachedPages());
        assertEquals(2, f.storedPages());
        f.truncate(3 * PAGE);
        byte[] all = readAll(f, 0, 3 * PAGE);
        assertArrayEquals(Arrays.copyOf(pattern(3 * PAGE, 5), PAGE + 10), Arrays.copyOf(all, PAGE + 10));
        assertArrayEquals(new byte[2 * PAGE - 10], Arrays.copyOfRange(all, PAGE + 10, 3 * PAGE));
        // the same after the cache is gone: the disk was trimmed too
        f.writeback();
        f.dropCache();
        assertArrayEquals(all, readAll(f, 0, 3 * PAGE));
    }

    @Test
    void punchHoleRemovesWholePagesAndZeroesEdges() {
        Inode f = fs.create("/f");
        byte[] data = pattern(4 * PAGE, 11);
        f.write(0, MemorySegment.ofArray(data));
        f.punchHole(PAGE / 2, 2 * PAGE);
        assertEquals(4 * PAGE, f.size(), "KEEP_SIZE");
        assertEquals(3, f.cachedPages(), "only page 1 lies wholly inside the hole");
        byte[] expect = data.clone();
        Arrays.fill(expect, PAGE / 2, PAGE / 2 + 2 * PAGE, (byte) 0);
        assertArrayEquals(expect, readAll(f, 0, 4 * PAGE));
        f.punchHole(10, 20);
        Arrays.fill(expect, 10, 30, (byte) 0);
        assertArrayEquals(expect, readAll(f, 0, 4 * PAGE));
    }

    @Test
    void badArgumentsChangeNothing() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(pattern(100, 1)));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.truncate(-1)).errno());
        assertEquals(Errno.EFBIG, assertThrows(ErrnoException.class,
                () -> f.truncate(Inode.MAX_FILE_SIZE + 1)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> f.write(-1, MemorySegment.ofArray(new byte[1]))).errno());
        assertEquals(Errno.EFBIG, assertThrows(ErrnoException.class,
                () -> f.write(Inode.MAX_FILE_SIZE, MemorySegment.ofArray(new byte[1]))).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.punchHole(0, 0)).errno());
        assertEquals(100, f.size());
        assertArrayEquals(pattern(100, 1), readAll(f, 0, 100));
    }

    @Test
    void shortWriteWhenMemoryRunsOut() {
        try (HostMemory tiny = new HostMemory(2L << 20)) {
            MemFs small = new MemFs(tiny, tracer, "tiny", false);
            Inode f = small.create("/big");
            long written = f.write(0, MemorySegment.ofArray(new byte[600 * PAGE]));
            assertEquals(512L * PAGE, written, "one 2 MiB section holds 512 pages");
            assertEquals(written, f.size());
            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> f.write(written, MemorySegment.ofArray(new byte[PAGE])));
            assertEquals(Errno.ENOMEM, e.errno());
            assertEquals(written, f.size());
        }
    }

    @Test
    void pagesLiveInHostFrames() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(new byte[]{1, 2, 3}));
        long pfn = f.frameOf(0).orElseThrow();
        assertEquals(1, mem.refCount(pfn), "the page cache holds one reference");
        assertEquals(3, mem.frame(pfn).get(ValueLayout.JAVA_BYTE, 2));
        assertTrue(f.frameOf(1).isEmpty());
        assertNotEquals(-1, pfn);
    }
}
