package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The merge of {@code sg_alloc_append_table_from_pages} (lib/scatterlist.c): a range joins the run before it when
 * it starts where that run ends and the joined run stays within {@code max_segment}.
 */
class SgAppendTableTest {

    @Test
    void contiguousRangesJoinAndAGapStartsANewRun() {
        SgAppendTable<SgEntry> t = SgAppendTable.sgEntries();
        t.append(0x1000, 0x1000);
        t.append(0x2000, 0x3000);
        t.append(0x8000, 0x10);
        t.append(0x8010, 0x20);
        assertEquals(List.of(new SgEntry(0x1000, 0x4000), new SgEntry(0x8000, 0x30)), t.toList());
    }

    @Test
    void aRunStopsGrowingAtMaxSegment() {
        SgAppendTable<DmaSegment> t = SgAppendTable.dmaSegments(0x2000);
        for (long a = 0x10000; a < 0x15000; a += 0x1000) {
            t.append(a, 0x1000);
        }
        assertEquals(List.of(new DmaSegment(0x10000, 0x2000), new DmaSegment(0x12000, 0x2000),
                new DmaSegment(0x14000, 0x1000)), t.toList());
    }

    @Test
    void aRangeLongerThanMaxSegmentStaysWholeInARunOfItsOwn() {
        SgAppendTable<DmaSegment> t = SgAppendTable.dmaSegments(0x1000);
        t.append(0, 0x800);
        t.append(0x800, 0x3000);
        t.append(0x3800, 0x800);
        assertEquals(List.of(new DmaSegment(0, 0x800), new DmaSegment(0x800, 0x3000), new DmaSegment(0x3800, 0x800)),
                t.toList());
    }

    @Test
    void nothingAppendedIsNoRun() {
        assertTrue(SgAppendTable.dmaSegments().toList().isEmpty());
    }

    @Test
    void anEmptyRangeOrLimitIsRefusedWithTheValue() {
        SgAppendTable<DmaSegment> t = SgAppendTable.dmaSegments();
        ErrnoException e = assertThrows(ErrnoException.class, () -> t.append(0x4000, 0));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("0x4000") && e.getMessage().contains("length 0"), e.getMessage());
        t.append(0x4000, 1);
        assertEquals(List.of(new DmaSegment(0x4000, 1)), t.toList());
        ErrnoException l = assertThrows(ErrnoException.class, () -> SgAppendTable.dmaSegments(-5));
        assertEquals(Errno.EINVAL, l.errno());
        assertTrue(l.getMessage().contains("-5"), l.getMessage());
    }
}
