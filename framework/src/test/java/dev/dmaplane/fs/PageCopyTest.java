package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Reads and writes that hand each page piece to the caller ({@code filemap_read} copying folio by folio to its
 * {@code iov_iter}, {@code generic_perform_write} from it, {@code mm/filemap.c}): a read sees the cached frame itself
 * and the zero page for a hole, caching nothing ({@code shmem_file_read_iter} with {@code SGP_READ},
 * {@code mm/shmem.c}); readers find cached pages without the {@code i_pages} lock, so a reader never waits for another
 * ({@code filemap_get_read_batch} under RCU); a write is whole to every reader, as the inode's {@code i_rwsem} keeps it.
 */
class PageCopyTest {
    private static final int PAGE = (int) HostMemory.PAGE_SIZE;
    private static final long WAIT_S = 10;
    private final HostMemory mem = new HostMemory(64L << 20);
    private final MemFs fs = new MemFs(mem, new Tracer(), "memfs0", false);
    private final ExecutorService pool = Executors.newFixedThreadPool(3);

    @AfterEach
    void tearDown() throws InterruptedException {
        pool.shutdownNow();
        assertTrue(pool.awaitTermination(WAIT_S, TimeUnit.SECONDS), "every test thread stopped");
        mem.close();
    }

    private static void fill(Inode f, int page, int value) {
        f.write((long) page * PAGE, MemorySegment.ofArray(new byte[PAGE]).fill((byte) value));
    }

    /** A piece of a read: its offset in the transfer, its address, and its bytes. */
    private record Piece(long at, long address, byte[] bytes) {
    }

    @Test
    void aReadHandsTheCachedFrameAndTheZeroPageForAHole() {
        Inode f = fs.create("/f");
        f.truncate(3L * PAGE);
        fill(f, 0, 0x5A);
        fill(f, 2, 0x6B);
        List<Piece> pieces = new ArrayList<>();
        long n = f.read(100, 3L * PAGE - 200, (page, at) -> pieces.add(new Piece(at, page.address(),
                page.toArray(ValueLayout.JAVA_BYTE))));
        assertEquals(3L * PAGE - 200, n);
        assertEquals(List.of(0L, (long) PAGE - 100, 2L * PAGE - 100), pieces.stream().map(Piece::at).toList());
        long frame0 = mem.frame(f.frameOf(0).orElseThrow()).address();
        assertEquals(frame0 + 100, pieces.get(0).address(), "the first piece is the cached frame itself");
        assertEquals(PAGE - 100, pieces.get(0).bytes().length);
        assertTrue(allEqual(pieces.get(0).bytes(), 0x5A));
        assertTrue(allEqual(pieces.get(1).bytes(), 0), "the hole reads as zeroes");
        assertTrue(allEqual(pieces.get(2).bytes(), 0x6B));
        assertEquals(PAGE - 100, pieces.get(2).bytes().length);
        assertEquals(2, f.cachedPages(), "reading the hole cached nothing");
    }

    @Test
    void aWriteFillsThePagesInPlaceAndStopsWhereTold() {
        Inode f = fs.create("/f");
        long n = f.write(0, 3L * PAGE, (page, at) -> {
            if (at >= PAGE) {
                return false;
            }
            page.fill((byte) 0x33);
            return true;
        });
        assertEquals(PAGE, n, "the write stopped before its second page");
        assertEquals(PAGE, f.size());
        byte[] back = new byte[PAGE];
        assertEquals(PAGE, f.read(0, MemorySegment.ofArray(back)));
        assertTrue(allEqual(back, 0x33));
        assertEquals(1, f.dirtyPages());
    }

    @Test
    void badArgumentsAreEinval() {
        Inode f = fs.create("/f");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.read(0, -1, (p, at) -> true)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.read(-1, 1, (p, at) -> true)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.read(0, 1, null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.write(0, -1, (p, at) -> true)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> f.write(0, 1, null)).errno());
        assertEquals(0, f.size(), "nothing was written");
    }

    /**
     * A reader held inside its copy of page 0 keeps no lock other readers need: readers of the same page, of another
     * cached page, of a hole and of a page read back in from the disk all finish meanwhile.
     */
    @Test
    void aReaderHeldInsideAPageBlocksNoOtherReader() throws Exception {
        Inode f = fs.create("/f");
        f.truncate(4L * PAGE);
        fill(f, 0, 1);
        fill(f, 1, 2);
        fill(f, 3, 4);
        f.writeback();
        CountDownLatch inside = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        Future<Long> held = pool.submit(() -> f.read(0, PAGE, (page, at) -> {
            inside.countDown();
            try {
                return release.await(WAIT_S, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }));
        try {
            assertTrue(inside.await(WAIT_S, TimeUnit.SECONDS), "the first reader is inside page 0");
            for (int page : new int[]{0, 1, 2}) {
                int expect = page == 2 ? 0 : page + 1;
                Future<byte[]> other = pool.submit(() -> readPage(f, page));
                assertTrue(allEqual(other.get(WAIT_S, TimeUnit.SECONDS), expect), "page " + page);
            }
            assertFalse(held.isDone());
        } finally {
            release.countDown();
        }
        assertEquals(PAGE, held.get(WAIT_S, TimeUnit.SECONDS));
        f.dropCache();
        assertEquals(0, f.cachedPages());
        CountDownLatch inside2 = new CountDownLatch(1);
        CountDownLatch release2 = new CountDownLatch(1);
        Future<Long> held2 = pool.submit(() -> f.read(PAGE, PAGE, (page, at) -> {
            inside2.countDown();
            try {
                return release2.await(WAIT_S, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }));
        try {
            assertTrue(inside2.await(WAIT_S, TimeUnit.SECONDS), "a reader is inside page 1, read back in");
            Future<byte[]> miss = pool.submit(() -> readPage(f, 3));
            assertTrue(allEqual(miss.get(WAIT_S, TimeUnit.SECONDS), 4), "a miss reads page 3 in meanwhile");
        } finally {
            release2.countDown();
        }
        assertEquals(PAGE, held2.get(WAIT_S, TimeUnit.SECONDS));
    }

    /**
     * Two readers of page 0, which a writer rewrites whole again and again, and of page 1, which nobody writes: every
     * read of page 0 is one whole write, never torn, and page 1 always reads as it was.
     */
    @Test
    void readersSeeWholeWritesWhileAWriterWrites() throws Exception {
        Inode f = fs.create("/f");
        f.truncate(2L * PAGE);
        fill(f, 1, 0x77);
        int writes = 2000;
        CountDownLatch start = new CountDownLatch(1);
        Future<?> writer = pool.submit(() -> {
            assertTrue(start.await(WAIT_S, TimeUnit.SECONDS));
            for (int v = 1; v <= writes; v++) {
                fill(f, 0, v);
            }
            return null;
        });
        List<Future<Integer>> readers = new ArrayList<>();
        for (int r = 0; r < 2; r++) {
            readers.add(pool.submit(() -> {
                assertTrue(start.await(WAIT_S, TimeUnit.SECONDS));
                int reads = 0;
                boolean last = false;
                while (!last && reads < 10_000_000) {
                    last = writer.isDone();
                    byte[] p0 = readPage(f, 0);
                    if (!allEqual(p0, p0[0])) {
                        throw new AssertionError("torn read of page 0 at read " + reads);
                    }
                    if (!allEqual(readPage(f, 1), 0x77)) {
                        throw new AssertionError("page 1 changed at read " + reads);
                    }
                    reads++;
                }
                return reads;
            }));
        }
        start.countDown();
        writer.get(WAIT_S * 3, TimeUnit.SECONDS);
        for (Future<Integer> r : readers) {
            assertTrue(r.get(WAIT_S * 3, TimeUnit.SECONDS) > 0);
        }
        assertTrue(allEqual(readPage(f, 0), writes), "the last write is what stays");
    }

    private static byte[] readPage(Inode f, int page) {
        byte[] b = new byte[PAGE];
        assertEquals(PAGE, f.read((long) page * PAGE, PAGE, (p, at) -> {
            MemorySegment.copy(p, ValueLayout.JAVA_BYTE, 0, b, (int) at, (int) p.byteSize());
            return true;
        }));
        return b;
    }

    private static boolean allEqual(byte[] b, int value) {
        for (byte x : b) {
            if (x != (byte) value) {
                return false;
            }
        }
        return true;
    }
}
