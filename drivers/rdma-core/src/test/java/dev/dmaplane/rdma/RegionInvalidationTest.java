package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.spi.HwPd;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * LOCAL_INV and SEND_WITH_INV naming a memory region's key, on the two kinds of provider Linux has. rxe (the
 * default, {@code RdmaProvider.invalidatesRegions} false): {@code rxe_invalidate_mr} invalidates only
 * {@code IB_MR_TYPE_MEM_REG} regions, so a user region's key is refused ({@code rxe_do_local_ops}: LOC_QP_OP_ERR;
 * {@code rxe_resp.c}: REM_INV_REQ_ERR) and the region stays usable. siw (true): {@code siw_invalidate_stag} finds
 * the STag by its index alone, refuses another PD's region ({@code -EACCES}), sets {@code stag_valid} to 0 without
 * looking at it first, and {@code siw_check_mem} then refuses every access through the key until deregistration.
 * The loopback provider reports a refused access as rxe does (LOC_PROT_ERR locally, REM_ACCESS_ERR remotely).
 */
@Timeout(60)
class RegionInvalidationTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final int RW = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    private static final byte[] MARK = "bytes nobody may overwrite".getBytes();

    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final CompletionQueue cq = ctx.createCq(256, null, 0);
    private final long buf = f.alloc(8 * PAGE);
    private final MemoryRegion mr = pd.regMr(buf, 8 * PAGE, RW);
    private final long src = f.alloc(PAGE);
    private final MemoryRegion srcMr = pd.regMr(src, PAGE, RW);

    @AfterEach
    void close() {
        f.close();
    }

    private QueuePair[] pair() {
        return Fixture.pair(pd, cq, QpType.RC, 16);
    }

    private WorkCompletion one() {
        return Fixture.poll(cq, 1).getFirst();
    }

    private WcStatus localInv(int key) {
        QueuePair q = pair()[0];
        q.postSend(new SendWr.LocalInv(1, SIGNALED, key));
        WorkCompletion w = one();
        assertEquals(WcOpcode.LOCAL_INV, w.opcode());
        return w.status();
    }

    /** An RDMA WRITE of {@code MARK}'s length from {@code src} over a fresh pair, its status. */
    private WcStatus write(long raddr, int rkey) {
        pair()[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(src, MARK.length, srcMr.lkey())), SIGNALED,
                raddr, rkey));
        return one().status();
    }

    @Test
    void rxeRefusesAUserRegionsKeyAndTheRegionStaysUsable() {
        assertEquals(WcStatus.LOC_QP_OP_ERR, localInv(mr.lkey()), "rxe_invalidate_mr: not IB_MR_TYPE_MEM_REG");

        QueuePair[] p = pair();
        p[1].postRecv(RecvWr.of(7, new Sge(buf + PAGE, 64, mr.lkey())));
        p[0].postSend(new SendWr.SendWithInv(1, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, mr.rkey()));
        List<WorkCompletion> both = Fixture.poll(cq, 2);
        assertEquals(List.of("1 REM_INV_REQ_ERR", "7 REM_INV_REQ_ERR"),
                both.stream().map(w -> w.wrId() + " " + w.status()).sorted().toList(), both.toString());

        f.write(src, "the region still takes writes".getBytes());
        pair()[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(src, 29, srcMr.lkey())), SIGNALED, buf + 100,
                mr.rkey()));
        assertEquals(WcStatus.SUCCESS, one().status());
        assertArrayEquals("the region still takes writes".getBytes(), f.read(buf + 100, 29));
        assertTrue(((HwMr) mr).isStagValid());
    }

    @Test
    void localInvalidateEndsEveryAccessThroughTheRegionsKey() {
        f.provider().regionInvalidation = true;
        f.write(src, MARK);
        f.write(buf, MARK);
        assertEquals(WcStatus.SUCCESS, localInv(mr.lkey()));
        assertFalse(((HwMr) mr).isStagValid());

        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf, mr.rkey()), "siw_check_mem: STag invalid");
        QueuePair[] p = pair();
        p[0].postSend(new SendWr.RdmaRead(1, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, buf, mr.rkey()));
        assertEquals(WcStatus.REM_ACCESS_ERR, one().status());
        p = pair();
        p[0].postSend(new SendWr.Send(1, List.of(new Sge(buf, 8, mr.lkey())), SIGNALED, null));
        assertEquals(WcStatus.LOC_PROT_ERR, one().status(), "the lkey is the same STag");
        assertEquals(QpState.ERR, p[0].query().qpState());
        p = pair();
        p[1].postRecv(RecvWr.of(7, new Sge(buf, 64, mr.lkey())));
        p[0].postSend(new SendWr.Send(1, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, null));
        List<WorkCompletion> both = Fixture.poll(cq, 2);
        assertEquals(WcStatus.LOC_PROT_ERR, both.stream().filter(w -> w.wrId() == 7).findFirst().orElseThrow()
                .status(), both.toString());
        assertArrayEquals(MARK, f.read(buf, MARK.length), "nothing reached the invalidated region");

        assertEquals(WcStatus.SUCCESS, localInv(mr.lkey()), "an invalid STag may be invalidated again");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf, mr.rkey()), "and stays invalid");
    }

    @Test
    void sendWithInvalidateInvalidatesTheRegionItNames() {
        f.provider().regionInvalidation = true;
        f.write(buf + PAGE, MARK);
        QueuePair[] p = pair();
        p[1].postRecv(RecvWr.of(7, new Sge(src + 512, 64, srcMr.lkey())));
        p[0].postSend(new SendWr.SendWithInv(1, List.of(new Sge(src, 8, srcMr.lkey())), SIGNALED, mr.rkey()));
        List<WorkCompletion> both = Fixture.poll(cq, 2);
        WorkCompletion r = both.stream().filter(w -> w.wrId() == 7).findFirst().orElseThrow();
        assertEquals(WcStatus.SUCCESS, r.status(), both.toString());
        assertEquals(WcFlags.WITH_INV, r.wcFlags() & WcFlags.WITH_INV);
        assertEquals(mr.rkey(), r.invalidatedRkey());
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf + PAGE, mr.rkey()));
        assertArrayEquals(MARK, f.read(buf + PAGE, MARK.length));
    }

    /** {@code siw_invalidate_stag} looks the STag up by its index ({@code siw_mem_id2obj(sdev, stag >> 8)}). */
    @Test
    void theIndexAloneNamesTheRegionAndAnotherPdsRegionIsRefused() {
        f.provider().regionInvalidation = true;
        assertEquals(WcStatus.SUCCESS, localInv(mr.lkey() ^ 0x5a), "the 8-bit key is not compared");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(buf, mr.rkey()));

        ProtectionDomain other = ctx.allocPd();
        long ob = f.alloc(PAGE);
        MemoryRegion foreign = other.regMr(ob, PAGE, RW);
        assertEquals(WcStatus.LOC_QP_OP_ERR, localInv(foreign.lkey()), "-EACCES: another PD");
        assertEquals(WcStatus.LOC_QP_OP_ERR, localInv((0xffff << 8) | 1), "-EINVAL: no region at the index");
        assertTrue(((HwMr) foreign).isStagValid());
        QueuePair[] q = Fixture.pair(other, cq, QpType.RC, 4);
        MemoryRegion oSrc = other.regMr(src, PAGE, RW);
        f.write(src, MARK);
        q[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(src, MARK.length, oSrc.lkey())), SIGNALED, ob,
                foreign.rkey()));
        assertEquals(WcStatus.SUCCESS, one().status(), "the refused invalidation left the region usable");
        assertArrayEquals(MARK, f.read(ob, MARK.length));
    }

    /**
     * A lease taken before the invalidation stays usable until it is closed (the invalidation takes no lock and
     * waits for nothing), as siw lets a message go on whose memory it resolved before; a new access is refused.
     */
    @Test
    void aLeaseTakenBeforeStaysUsableAndTheNextAccessIsRefused() {
        f.provider().regionInvalidation = true;
        MemoryAccess mem = f.provider().handle().memory();
        try (DmaLease l = mem.local((HwPd) pd, mr.lkey(), buf, 64, Access.LOCAL_WRITE)) {
            assertEquals(WcStatus.SUCCESS, localInv(mr.lkey()));
            l.write(0, MemorySegment.ofArray(MARK));
        }
        assertArrayEquals(MARK, f.read(buf, MARK.length));
        AccessFault e = assertThrows(AccessFault.class, () -> mem.local((HwPd) pd, mr.lkey(), buf, 64, 0));
        assertEquals(WcStatus.LOC_PROT_ERR, e.status());
        assertTrue(e.getMessage().contains("invalidated"), e.getMessage());
    }

    /**
     * A retained lease ({@code DmaLease.retain}) is siw's memory reference kept from a READ's first response segment
     * to its end ({@code siw_proc_rresp} keeps {@code wqe->mem[0]}; {@code siw_mr_drop_mem} clears {@code stag_valid}
     * and drops only the region's reference; {@code siw_mem_put} frees the memory at the last): the STag invalidated
     * and the region deregistered, the deregistration returns at once, the bytes still reach the pages, which stay
     * pinned and mapped until the lease closes; then everything is given back.
     */
    @Test
    void aRetainedLeaseKeepsTheMemoryOfADeregisteredRegionUntilItCloses() {
        f.provider().regionInvalidation = true;
        PciFunction hca = f.machine.pci().function("04:00.0");
        long pins = f.machine.memory().pinsOutstanding();
        long pinned = f.mm.pinnedPages();
        int mappings = f.machine.activeDmaMappings(hca);
        MemoryAccess mem = f.provider().handle().memory();
        long b = f.alloc(4 * PAGE);
        MemoryRegion r = pd.regMr(b, 4 * PAGE, RW);
        DmaLease first = mem.local((HwPd) pd, r.lkey(), b, 4 * PAGE, Access.LOCAL_WRITE);
        DmaLease kept = first.retain();
        try {
            assertTrue(kept.stable());
            assertEquals(4 * PAGE, kept.length());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                    () -> first.write(0, MemorySegment.ofArray(MARK))).errno(), "the lease retained is closed");
            assertEquals(WcStatus.SUCCESS, localInv(r.lkey()));
            r.destroy(); // waits for no retained lease
            assertEquals(pins + 4, f.machine.memory().pinsOutstanding(), "the pages stay pinned");
            assertEquals(mappings + 1, f.machine.activeDmaMappings(hca), "and mapped");
            kept.write(PAGE + 8, MemorySegment.ofArray(MARK));
            assertArrayEquals(MARK, f.read(b + PAGE + 8, MARK.length), "the bytes reach the pages");
        } finally {
            kept.close();
        }
        assertEquals(pins, f.machine.memory().pinsOutstanding(), "unpinned once the lease closed");
        assertEquals(pinned, f.mm.pinnedPages());
        assertEquals(mappings, f.machine.activeDmaMappings(hca), "unmapped");
        kept.close();
        assertEquals(pins, f.machine.memory().pinsOutstanding(), "a second close drops nothing more");
    }

    /** Only a stable lease can be retained: not an empty one, not a closed one. */
    @Test
    void aLeaseThatIsNotStableOrIsClosedCannotBeRetained() {
        MemoryAccess mem = f.provider().handle().memory();
        DmaLease empty = mem.local((HwPd) pd, mr.lkey(), buf, 0, 0);
        assertFalse(empty.stable());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, empty::retain).errno());
        DmaLease l = mem.local((HwPd) pd, mr.lkey(), buf, 64, 0);
        l.close();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, l::retain).errno());
        mem.local((HwPd) pd, mr.lkey(), buf, 64, 0).close(); // nothing left held
        mr.destroy();
    }

    @Test
    void anInvalidatedRegionDeregistersAndGivesEverythingBack() {
        f.provider().regionInvalidation = true;
        PciFunction hca = f.machine.pci().function("04:00.0");
        long pins = f.machine.memory().pinsOutstanding();
        long pinned = f.mm.pinnedPages();
        int mappings = f.machine.activeDmaMappings(hca);
        int objects = f.device().objectCount();
        long b = f.alloc(4 * PAGE);
        MemoryRegion r = pd.regMr(b, 4 * PAGE, RW);
        assertEquals(WcStatus.SUCCESS, localInv(r.lkey()));
        int objectsWithPair = f.device().objectCount();
        r.destroy();
        assertEquals(pins, f.machine.memory().pinsOutstanding(), "unpinned");
        assertEquals(pinned, f.mm.pinnedPages());
        assertEquals(mappings, f.machine.activeDmaMappings(hca), "unmapped");
        assertEquals(objectsWithPair - 1, f.device().objectCount(), "the region's object is gone");
        assertTrue(objects < objectsWithPair);
        assertEquals(WcStatus.LOC_QP_OP_ERR, localInv(r.lkey()), "the key names no region any more");
    }
}
