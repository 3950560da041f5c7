package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Remote addresses a peer can put in a RETH or AtomicETH that lie outside the target region only in unsigned
 * arithmetic, between the two HCAs: rxe's {@code check_rkey} ({@code rxe_resp.c}) refuses them through
 * {@code mr_check_range} ({@code rxe_mr.c}, {@code u64} compares) with {@code RESPST_ERR_RKEY_VIOLATION}, which for
 * RC is a class C error: {@code do_class_ac_error} NAKs with Remote Access Error, so the requester completes with
 * REM_ACCESS_ERR at once (no retries, not RETRY_EXC_ERR), and {@code goto_error} moves the responder's QP to ERR
 * ({@code rxe_qp_error}). No byte of the region or of the memory around it changes. Also a local SGE whose end
 * wraps, and zero-length READs, which {@code check_rkey} executes without a key (IBA C9-88), every time.
 */
@Timeout(60)
class RemoteRangeTest {
    private static final long TOP = 1L << 63;
    private static final int REGION = 64 * 1024;
    /** Where the target region starts in the responder's buffer; 64 KiB of other registered memory on each side. */
    private static final long AT = 1L << 20;
    private static final int GUARD = 64 * 1024;

    private final Hcas h = new Hcas();
    private final MemoryRegion target = h.b.pd.regMr(h.b.buf + AT, REGION, Hcas.ALL);
    private final long iova = target.iova();

    @AfterEach
    void close() {
        h.close(); // fails on any error the engines swallowed
        assertEquals(0, Hcas.softroceThreads());
    }

    /** Posts {@code wr} and a write behind it; the first ends in REM_ACCESS_ERR from a NAK, the second is flushed. */
    private void assertNakedAndNothingChanged(SendWr wr) {
        byte[] around = Hcas.random(GUARD + REGION + GUARD, 23);
        h.b.write(AT - GUARD, around);
        byte[] local = h.a.read(0, 64 * 1024);
        Engine requester = h.engine("rxe0");
        long retries = requester.counters.retries;
        QueuePair[] p = h.pair();
        p[0].postSend(List.of(wr, new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(WcStatus.REM_ACCESS_ERR, wc.get(0).status(), "a Remote Access Error NAK came back: " + wc);
        assertEquals(WcStatus.WR_FLUSH_ERR, wc.get(1).status());
        assertEquals(retries, requester.counters.retries, "the NAK came at once: no transport retry");
        assertEquals(QpState.ERR, p[0].query().qpState());
        assertEquals(QpState.ERR, p[1].query().qpState(), "class C at the responder: its QP goes to ERR");
        assertArrayEquals(around, h.b.read(AT - GUARD, around.length), "no byte of the region or around it changed");
        assertArrayEquals(local, h.a.read(0, local.length), "nothing was scattered at the requester");
    }

    private SendWr write(long remote, int len) {
        return new SendWr.RdmaWrite(1, List.of(h.a.sge(0, len)), SIGNALED, remote, target.rkey());
    }

    private SendWr read(long remote, int len) {
        return new SendWr.RdmaRead(1, List.of(h.a.sge(0, len)), SIGNALED, remote, target.rkey());
    }

    @Test
    void aWriteToIovaPlus0x2000Xor2To63IsNakedNotWrittenAtOffset0x2000() {
        assertNakedAndNothingChanged(write((iova + 0x2000) ^ TOP, 4096));
    }

    @Test
    void aShortWriteOfATrainToAWrappedAddressIsNaked() {
        assertNakedAndNothingChanged(write((iova + 0x2000) ^ TOP, 64));
    }

    @Test
    void aLongCutThroughWriteToAWrappedAddressIsNaked() {
        assertNakedAndNothingChanged(write(iova + TOP, 32 * 1024));
    }

    @Test
    void aReadFromAWrappedAddressIsNaked() {
        assertNakedAndNothingChanged(read((iova + 0x2000) ^ TOP, 4096));
    }

    @Test
    void anAtomicAtAWrappedAddressIsNaked() {
        assertNakedAndNothingChanged(new SendWr.AtomicFetchAndAdd(1, List.of(h.a.sge(0, 8)), SIGNALED,
                (iova + 0x2000) ^ TOP, target.rkey(), 1));
    }

    /** Addresses that passed the signed check without aliasing reached the translation out of range. */
    @Test
    void wrappedAddressesThatDoNotAliasBackAreNakedToo() {
        assertNakedAndNothingChanged(write(iova + TOP + (1L << 40), 4096));
    }

    @Test
    void aReadWhoseEndWrapsPast2To64IsNaked() {
        assertNakedAndNothingChanged(read(-4096, 8192));
    }

    /**
     * A short write joins the train of the one before it when its SGE lies in the local lease already taken; an SGE
     * whose end wraps past 2^64 does not (rxe's {@code copy_data} checks every SGE with {@code mr_check_range}): it
     * fails alone with LOC_PROT_ERR, nothing is sent for it.
     */
    @Test
    void aWriteWhoseLocalSgeWrapsDoesNotJoinATrain() {
        byte[] around = Hcas.random(GUARD + REGION + GUARD, 29);
        h.b.write(AT - GUARD, around);
        h.a.write(0, Hcas.random(64, 31));
        QueuePair[] p = h.pair();
        p[0].postSend(List.of(write(iova, 64),
                new SendWr.RdmaWrite(2, List.of(new Sge(Long.MAX_VALUE - 8, 64, h.a.mr.lkey())), SIGNALED, iova + 64,
                        target.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(WcStatus.SUCCESS, wc.get(0).status(), wc.toString());
        assertEquals(WcStatus.LOC_PROT_ERR, wc.get(1).status(), wc.toString());
        System.arraycopy(h.a.read(0, 64), 0, around, GUARD, 64);
        assertArrayEquals(around, h.b.read(AT - GUARD, around.length), "the first write landed, nothing else");
    }

    @Test
    void zeroLengthReadsSucceedEveryTime() {
        QueuePair[] p = h.pair();
        for (int i = 1; i <= 3; i++) {
            p[0].postSend(new SendWr.RdmaRead(i, List.of(), SIGNALED, 0, 0));
            WorkCompletion wc = Hcas.one(h.a.cq);
            assertEquals(WcStatus.SUCCESS, wc.status(), "zero-length READ " + i + ": " + wc);
            assertEquals(0, wc.byteLen());
        }
        byte[] data = Hcas.random(4096, 5);
        h.b.write(AT, data);
        p[0].postSend(read(iova, 4096));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status(), "the connection still works");
        assertArrayEquals(data, h.a.read(0, 4096));
    }
}
