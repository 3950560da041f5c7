package dev.dmaplane.rdma.impl;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/**
 * rdma_rxe's keys ({@code rxe_mr_init}, {@code rxe_alloc_mw}, {@code rxe_get_next_key}, {@code rkey_is_mw}) and its
 * cyclic pools ({@code xa_alloc_cyclic} in {@code rxe_pool.c}): an index comes back only after the others were
 * used, and each new key of an index has an 8-bit part unlike the previous one.
 */
class KeyTableTest {
    @Test
    void everyNewKeyOfAnIndexDiffersFromItsLastOne() {
        KeyTable t = new KeyTable();
        int index = t.allocMrIndex();
        int last = t.nextKey(index);
        for (int i = 0; i < 1000; i++) {
            int k = t.nextKey(index);
            assertEquals(index, k >>> 8);
            assertNotEquals(last & 0xFF, k & 0xFF);
            last = k;
        }
    }

    @Test
    void regionAndWindowIndicesAreApart() {
        KeyTable t = new KeyTable();
        int mr = t.allocMrIndex();
        int mw = t.allocMwIndex();
        assertEquals(1, mr);
        assertEquals(0x10001, mw);
        assertFalse(KeyTable.isMwKey(t.nextKey(mr)));
        assertTrue(KeyTable.isMwKey(t.nextKey(mw)));
    }

    @Test
    void poolsHandOutIndicesCyclically() {
        IndexPool p = new IndexPool(1, 4);
        assertEquals(1, p.alloc());
        assertEquals(2, p.alloc());
        p.free(1);
        assertEquals(3, p.alloc(), "a freed index waits its turn");
        assertEquals(4, p.alloc());
        assertEquals(1, p.alloc(), "then the pool wraps");
        assertEquals(-1, p.alloc(), "full");
        p.free(3);
        assertEquals(3, p.alloc());
    }
}
