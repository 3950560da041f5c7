package dev.dmaplane.genalloc;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The pool of {@code lib/genalloc.c}: {@code gen_pool_add}, first-fit {@code gen_pool_alloc}, {@code gen_pool_free}. */
class GenPoolTest {
    private static final long P = GenPool.PAGE;

    @Test
    void firstFitAcrossRangesInTheOrderAdded() {
        GenPool pool = new GenPool();
        pool.add(16 * P, 4 * P, 0);
        pool.add(0, 8 * P, 0);
        assertEquals(16 * P, pool.alloc(3 * P));
        assertEquals(0, pool.alloc(2 * P), "the first range is too small now: the second, from its start");
        assertEquals(19 * P, pool.alloc(1));
        assertEquals(-1, pool.alloc(7 * P));
        pool.free(16 * P, 3 * P);
        assertEquals(16 * P, pool.alloc(P));
        assertEquals(8 * P, pool.avail(), "12 pages, 2 + 1 + 1 taken");
    }

    @Test
    void aRunNeverStraddlesTheBoundary() {
        GenPool pool = new GenPool();
        pool.add(0, 8 * P, 4 * P);
        assertEquals(0, pool.alloc(3 * P));
        assertEquals(4 * P, pool.alloc(2 * P), "pages 3..4 would straddle the boundary at page 4");
        assertEquals(-1, pool.alloc(3 * P));
    }

    @Test
    void badInputIsEinvalOrEbusyAndChangesNothing() {
        GenPool pool = new GenPool();
        pool.add(0, 4 * P, 0);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pool.add(1, P, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pool.add(8 * P, P, 3 * P)).errno());
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> pool.add(3 * P, 2 * P, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pool.alloc(0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pool.free(0, P)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pool.free(64 * P, P)).errno());
        assertEquals(4 * P, pool.avail());
        assertEquals(4 * P, pool.size());
    }
}
