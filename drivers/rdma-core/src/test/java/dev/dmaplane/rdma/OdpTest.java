package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.trace.TraceKind;
import com.sun.management.ThreadMXBean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * On-demand paging as {@code drivers/infiniband/core/umem_odp.c} does it and {@code ibv_reg_mr(3)} describes
 * {@code IBV_ACCESS_ON_DEMAND}: registration pins and maps nothing; the HCA's first touch faults pages in
 * ({@code hmm_range_fault}) and maps them one by one; the interval notifier unmaps them when the process unmaps,
 * migrates or protects them ({@code ib_umem_notifier_invalidate_range}) and tells the driver; the next touch faults
 * again, or fails when the memory is gone; a pinned region would have blocked the migration.
 */
class OdpTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(64, null, 0);
    private final long src = f.alloc(4 * PAGE);
    private final MemoryRegion srcMr = pd.regMr(src, 4 * PAGE, Access.LOCAL_WRITE);
    private final PciFunction hca = f.machine.pci().function("04:00.0");

    @AfterEach
    void close() {
        f.close();
    }

    private WcStatus write(long raddr, int rkey, int len) {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(src, len, srcMr.lkey())), SIGNALED, raddr, rkey));
        return cq.poll(1).getFirst().status();
    }

    @Test
    void registrationTakesNothingAndTheFirstTouchFaultsPagesIn() {
        long odp = f.alloc(16 * PAGE);
        long pins = f.machine.memory().pinsAcquired();
        int maps = f.machine.activeDmaMappings(hca);
        long resident = f.mm.residentPages();
        MemoryRegion mr = pd.regMr(odp, 16 * PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        assertTrue(mr.isOnDemand());
        assertEquals(PAGE, mr.pageSize());
        assertEquals(pins, f.machine.memory().pinsAcquired(), "nothing pinned");
        assertEquals(maps, f.machine.activeDmaMappings(hca), "nothing mapped");
        assertEquals(resident, f.mm.residentPages(), "nothing faulted in");

        f.write(src, "on demand, across two pages".getBytes());
        assertEquals(WcStatus.SUCCESS, write(odp + 3 * PAGE - 10, mr.rkey(), 27));
        assertEquals(maps + 2, f.machine.activeDmaMappings(hca), "the two touched pages are mapped");
        assertEquals(resident + 2, f.mm.residentPages());
        assertEquals(pins, f.machine.memory().pinsAcquired(), "still no pin");
        assertArrayEquals("on demand, across two pages".getBytes(), f.read(odp + 3 * PAGE - 10, 27));
        ResourceEntry e = ctx.resources().stream().filter(r -> r.type().equals("mr") && r.attrs().containsKey("odp-mapped"))
                .findFirst().orElseThrow();
        assertEquals("2", e.attrs().get("odp-mapped"));

        mr.destroy();
        assertEquals(maps, f.machine.activeDmaMappings(hca));
    }

    @Test
    void munmapInvalidatesAndTheNextTouchFails() {
        long odp = f.alloc(8 * PAGE);
        MemoryRegion mr = pd.regMr(odp, 8 * PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        int maps = f.machine.activeDmaMappings(hca);
        assertEquals(WcStatus.SUCCESS, write(odp + PAGE, mr.rkey(), 2 * (int) PAGE));
        assertEquals(maps + 2, f.machine.activeDmaMappings(hca));
        long since = f.machine.tracer().lastSeq();

        f.mm.munmap(odp + 2 * PAGE, PAGE);
        assertEquals(maps + 1, f.machine.activeDmaMappings(hca), "the unmapped page's DMA mapping went");
        assertEquals(1, f.provider().invalidations.size(), "the driver was told");
        assertArrayEquals(new long[]{odp + 2 * PAGE, PAGE}, f.provider().invalidations.getFirst());
        assertTrue(f.machine.tracer().since(since).stream().anyMatch(t -> t.kind() == TraceKind.INVALIDATE));

        assertEquals(WcStatus.REM_ACCESS_ERR, write(odp + 2 * PAGE, mr.rkey(), 8), "no memory there any more");
        assertEquals(WcStatus.SUCCESS, write(odp + PAGE, mr.rkey(), 8), "the page still mapped works");
        f.mm.mmapAnonymousFixed(odp + 2 * PAGE, PAGE, Prot.PROT_READ | Prot.PROT_WRITE);
        assertEquals(WcStatus.SUCCESS, write(odp + 2 * PAGE, mr.rkey(), 8), "new memory at the address faults in");
    }

    @Test
    void localAccessesFaultInToo() {
        long odp = f.alloc(4 * PAGE);
        MemoryRegion mr = pd.regMr(odp, 4 * PAGE, Access.LOCAL_WRITE | Access.ON_DEMAND);
        f.write(odp + 5, "from an ODP buffer".getBytes());
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[1].postRecv(RecvWr.of(1, new Sge(odp + 2 * PAGE, 64, mr.lkey())));
        p[0].postSend(new SendWr.Send(2, List.of(new Sge(odp + 5, 18, mr.lkey())), SIGNALED, null));
        List<WorkCompletion> wc = Fixture.poll(cq, 2);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals("from an ODP buffer".getBytes(), f.read(odp + 2 * PAGE, 18));
    }

    @Test
    void migrationMovesAnOdpPageButNotAPinnedOne() {
        long odp = f.alloc(2 * PAGE);
        MemoryRegion mr = pd.regMr(odp, 2 * PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        f.write(src, "before".getBytes());
        assertEquals(WcStatus.SUCCESS, write(odp, mr.rkey(), 6));
        long before = f.mm.physAddr(odp).orElseThrow();
        long after = f.mm.migrate(odp);
        assertNotEquals(before, after);
        f.write(src, "after!".getBytes());
        assertEquals(WcStatus.SUCCESS, write(odp + 6, mr.rkey(), 6));
        assertArrayEquals("beforeafter!".getBytes(), f.read(odp, 12), "the HCA follows the page to its new frame");
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> f.mm.migrate(src)).errno(),
                "a long-term pinned page cannot move");
    }

    @Test
    void writeProtectionStopsHcaWritesButNotReads() {
        long odp = f.alloc(PAGE);
        MemoryRegion mr = pd.regMr(odp, PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        assertEquals(WcStatus.SUCCESS, write(odp, mr.rkey(), 8));
        f.mm.mprotect(odp, PAGE, Prot.PROT_READ);
        assertEquals(WcStatus.REM_ACCESS_ERR, write(odp, mr.rkey(), 8), "hmm_range_fault for write of a read-only VMA fails");
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[0].postSend(new SendWr.RdmaRead(1, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, odp, mr.rkey()));
        assertTrue(cq.poll(1).getFirst().isSuccess());
    }

    @Test
    void processExitUnmapsAndDeregistrationStopsTheNotifier() {
        long odp = f.alloc(4 * PAGE);
        MemoryRegion mr = pd.regMr(odp, 4 * PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        int maps = f.machine.activeDmaMappings(hca);
        assertEquals(WcStatus.SUCCESS, write(odp, mr.rkey(), 8));
        mr.destroy();
        assertEquals(maps, f.machine.activeDmaMappings(hca));
        int told = f.provider().invalidations.size();
        f.mm.munmap(odp, 4 * PAGE);
        assertEquals(told, f.provider().invalidations.size(), "a deregistered region hears nothing");

        long odp2 = f.alloc(PAGE);
        MemoryRegion mr2 = pd.regMr(odp2, PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        assertEquals(WcStatus.SUCCESS, write(odp2, mr2.rkey(), 8));
        assertEquals(maps + 1, f.machine.activeDmaMappings(hca));
        long srcBefore = f.machine.memory().pinsOutstanding();
        f.mm.close();
        assertEquals(maps, f.machine.activeDmaMappings(hca), "exit_mmap's RELEASE unmapped the ODP page");
        assertEquals(srcBefore, f.machine.memory().pinsOutstanding(), "the pinned region keeps its pins after exit");
        mr2.destroy();
    }

    /**
     * {@code ib_umem_odp_get} sizes nothing by the region: the kernel's {@code pfn_list}/{@code dma_list} hold what
     * {@code hmm_range_fault} filled. A region of exactly {@code max_mr_size} (1 TiB, 2^28 pages) costs no per-page
     * state until touched, then works at its far end.
     */
    @Test
    void aRegionOfMaxMrSizeTakesNoPerPageStateAndWorksAtItsFarEnd() {
        long size = f.device().attr().maxMrSize();
        assertEquals(1L << 40, size);
        long va = 0x7000_0000_0000L;
        long far = va + size - 2 * PAGE;
        f.mm.mmapAnonymousFixed(far, 2 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE); // only the last two pages exist
        int maps = f.machine.activeDmaMappings(hca);
        ThreadMXBean threads = (ThreadMXBean) ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().threadId();
        long allocated = threads.getThreadAllocatedBytes(tid);
        MemoryRegion mr = pd.regMr(va, size, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        long took = threads.getThreadAllocatedBytes(tid) - allocated;
        assertTrue(took < 1 << 20, "registering 2^28 pages on demand allocated " + took + " bytes");
        assertEquals(size, mr.length());
        assertEquals(maps, f.machine.activeDmaMappings(hca), "nothing mapped");

        f.write(src, "at the far end of a terabyte".getBytes());
        assertEquals(WcStatus.SUCCESS, write(va + size - PAGE - 14, mr.rkey(), 28), "across the last two pages");
        assertArrayEquals("at the far end of a terabyte".getBytes(), f.read(va + size - PAGE - 14, 28));
        assertEquals(maps + 2, f.machine.activeDmaMappings(hca), "the two touched pages, and only they, are mapped");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(va + size - 4, mr.rkey(), 8), "past the end");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(va, mr.rkey(), 8), "its first page has no memory");

        f.mm.munmap(far, 2 * PAGE);
        assertEquals(maps, f.machine.activeDmaMappings(hca), "the invalidation unmapped them");
        mr.destroy();
    }
}
