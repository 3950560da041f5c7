package dev.dmaplane.vfio.nvme.model;

import com.sun.management.ThreadMXBean;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The PRP walk of one command engine (NVM Express Base Specification 2.0, 4.1.1; QEMU's {@code nvme_map_prp}): PRP1
 * with its offset, PRP2 as the second page, adjacent pages merged into one span, and the walk's arrays reused from
 * command to command, so the common forms (PRP1 alone, PRP1 and PRP2) allocate nothing.
 */
class NvmePrpTest {
    private static final long PAGE = 4096;
    private static final int WALKS = 100_000;

    @Test
    void prp1AndPrp2GiveTheirSpansMergedWhenAdjacent() {
        Prp prp = new Prp(null); // these forms never fetch a list over the bus
        assertEquals(NvmeStatus.SUCCESS, prp.walk(0x1_0200, 0, 512, PAGE));
        assertEquals(1, prp.spans());
        assertEquals(0x1_0200, prp.addr(0));
        assertEquals(512, prp.length(0));
        assertEquals(NvmeStatus.SUCCESS, prp.walk(0x1_0800, 0x2_0000, 4096, PAGE));
        assertEquals(2, prp.spans(), "PRP1's page, then PRP2's");
        assertEquals(2048, prp.length(0));
        assertEquals(0x2_0000, prp.addr(1));
        assertEquals(2048, prp.length(1));
        assertEquals(NvmeStatus.SUCCESS, prp.walk(0x3_0000, 0x3_1000, 8192, PAGE));
        assertEquals(1, prp.spans(), "adjacent pages are one span");
        assertEquals(8192, prp.length(0));
        assertEquals(NvmeStatus.INVALID_PRP_OFFSET, prp.walk(0x3_0002, 0, 512, PAGE));
        assertEquals(NvmeStatus.INVALID_PRP_OFFSET, prp.walk(0x3_0000, 0x4_0010, 8192, PAGE));
        assertEquals(NvmeStatus.SUCCESS, prp.walk(-PAGE, 0, 2 * PAGE, PAGE));
        assertEquals(2, prp.spans(), "the last page and page 0 are not one span wrapping the address space");
    }

    @Test
    void theCommonWalksAllocateNothing() {
        ThreadMXBean threads = (ThreadMXBean) ManagementFactory.getThreadMXBean();
        Prp prp = new Prp(null);
        long sum = walkMany(prp); // warm: the arrays are as large as they get
        long before = threads.getCurrentThreadAllocatedBytes();
        sum += walkMany(prp);
        long allocated = threads.getCurrentThreadAllocatedBytes() - before;
        assertEquals(2L * 3 * WALKS, sum, "every walk succeeded");
        assertTrue(allocated < 1024, allocated + " bytes allocated by " + 3 * WALKS + " walks");
    }

    private static long walkMany(Prp prp) {
        long sum = 0;
        for (int i = 0; i < WALKS; i++) {
            long page = (i & 1023) * PAGE;
            sum += ok(prp.walk(page, 0, PAGE, PAGE));
            sum += ok(prp.walk(page + 512, page + 2 * PAGE, PAGE, PAGE));
            sum += ok(prp.walk(page, page + 8 * PAGE, 2 * PAGE, PAGE));
        }
        return sum;
    }

    private static int ok(int status) {
        return status == NvmeStatus.SUCCESS ? 1 : 0;
    }
}
