package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;

/**
 * The memory of a completion queue, laid out as rxe shares a queue with user space ({@code struct rxe_queue_buf}):
 * a producer index the HCA side advances, a consumer index the poller advances, each on a cache line of its own,
 * then a power-of-two ring of CQEs in the layout of {@code struct ib_uverbs_wc} (48 bytes: wr_id, status, opcode,
 * vendor_err, byte_len, imm_data or invalidate_rkey, qp_num, src_qp, wc_flags, pkey_index, slid, sl,
 * dlid_path_bits, port_num). The producer writes a CQE and then publishes it with a release store of the producer
 * index; the consumer reads the producer index with an acquire load before it reads CQEs, and hands their slots back
 * with a release store of the consumer index. Each side serialises its own writers: producers under the CQ's lock
 * (rxe's {@code cq_lock}), pollers under the poll lock (the provider library's lock in {@code ibv_poll_cq}).
 * <p>
 * The memory comes from an automatic arena: completions flushed at a disassociation stay readable until the
 * application drops the CQ, as they stay in the pages user space mapped.
 */
final class CqRing {
    static final int CQE_SIZE = 48;
    private static final long PRODUCER = 0;
    private static final long CONSUMER = 64;
    private static final long DATA = 128;
    private static final VarHandle INDEX = ValueLayout.JAVA_INT.varHandle();
    private static final WcStatus[] STATUS = new WcStatus[256];
    private static final WcOpcode[] OPCODE = new WcOpcode[256];

    static {
        for (WcStatus s : WcStatus.values()) {
            STATUS[s.value()] = s;
        }
        for (WcOpcode o : WcOpcode.values()) {
            OPCODE[o.value()] = o;
        }
    }

    private final MemorySegment mem;
    private final int mask;

    /** A ring with room for at least {@code entries} CQEs. */
    CqRing(int entries) {
        int slots = Integer.highestOneBit(Math.max(1, entries - 1)) << 1;
        mask = slots - 1;
        mem = Arena.ofAuto().allocate(DATA + (long) slots * CQE_SIZE, 64);
    }

    /** CQEs the ring can hold. */
    int slots() {
        return mask + 1;
    }

    private int producer() {
        return (int) INDEX.getAcquire(mem, PRODUCER);
    }

    private int consumer() {
        return (int) INDEX.getAcquire(mem, CONSUMER);
    }

    /** CQEs written and not yet consumed: readable by anyone, without a lock. */
    int size() {
        return producer() - consumer();
    }

    /** Writes {@code wc} and publishes it; false when every slot holds a CQE. The caller holds the CQ's lock. */
    boolean push(WorkCompletion wc) {
        int p = (int) INDEX.get(mem, PRODUCER);
        if (p - consumer() > mask) {
            return false;
        }
        long at = DATA + (long) (p & mask) * CQE_SIZE;
        mem.set(ValueLayout.JAVA_LONG, at, wc.wrId());
        mem.set(ValueLayout.JAVA_INT, at + 8, wc.status().value());
        mem.set(ValueLayout.JAVA_INT, at + 12, wc.opcode().value());
        mem.set(ValueLayout.JAVA_INT, at + 16, wc.vendorErr());
        mem.set(ValueLayout.JAVA_INT, at + 20, (int) wc.byteLen());
        mem.set(ValueLayout.JAVA_INT, at + 24, (wc.wcFlags() & WcFlags.WITH_INV) != 0 ? wc.invalidatedRkey() : wc.immData());
        mem.set(ValueLayout.JAVA_INT, at + 28, wc.qpNum());
        mem.set(ValueLayout.JAVA_INT, at + 32, wc.srcQp());
        mem.set(ValueLayout.JAVA_INT, at + 36, wc.wcFlags());
        mem.set(ValueLayout.JAVA_SHORT, at + 40, (short) wc.pkeyIndex());
        mem.set(ValueLayout.JAVA_SHORT, at + 42, (short) wc.slid());
        mem.set(ValueLayout.JAVA_BYTE, at + 44, (byte) wc.sl());
        mem.set(ValueLayout.JAVA_BYTE, at + 45, (byte) wc.dlidPathBits());
        INDEX.setRelease(mem, PRODUCER, p + 1);
        return true;
    }

    /** Reads up to {@code max} CQEs into {@code out} and frees their slots; how many. The caller holds the poll lock. */
    int poll(int max, List<WorkCompletion> out) {
        int c = (int) INDEX.get(mem, CONSUMER);
        int n = Math.min(max, producer() - c);
        for (int i = 0; i < n; i++) {
            out.add(read(DATA + (long) ((c + i) & mask) * CQE_SIZE));
        }
        if (n > 0) {
            INDEX.setRelease(mem, CONSUMER, c + n);
        }
        return n;
    }

    private WorkCompletion read(long at) {
        int flags = mem.get(ValueLayout.JAVA_INT, at + 36);
        int ex = mem.get(ValueLayout.JAVA_INT, at + 24);
        return new WorkCompletion(mem.get(ValueLayout.JAVA_LONG, at), STATUS[mem.get(ValueLayout.JAVA_INT, at + 8)],
                OPCODE[mem.get(ValueLayout.JAVA_INT, at + 12)], mem.get(ValueLayout.JAVA_INT, at + 16),
                Integer.toUnsignedLong(mem.get(ValueLayout.JAVA_INT, at + 20)),
                (flags & WcFlags.WITH_INV) != 0 ? 0 : ex, (flags & WcFlags.WITH_INV) != 0 ? ex : 0,
                mem.get(ValueLayout.JAVA_INT, at + 28), mem.get(ValueLayout.JAVA_INT, at + 32), flags,
                Short.toUnsignedInt(mem.get(ValueLayout.JAVA_SHORT, at + 40)),
                Short.toUnsignedInt(mem.get(ValueLayout.JAVA_SHORT, at + 42)),
                Byte.toUnsignedInt(mem.get(ValueLayout.JAVA_BYTE, at + 44)),
                Byte.toUnsignedInt(mem.get(ValueLayout.JAVA_BYTE, at + 45)));
    }

    /** Drops every CQE not consumed yet. The caller holds both locks. */
    void clear() {
        INDEX.setRelease(mem, CONSUMER, (int) INDEX.get(mem, PRODUCER));
    }

    /** Moves the CQEs not consumed yet into {@code to} (a resize). The caller holds both locks. */
    void moveTo(CqRing to) {
        ArrayList<WorkCompletion> pending = new ArrayList<>(size());
        poll(Integer.MAX_VALUE, pending);
        for (WorkCompletion wc : pending) {
            if (!to.push(wc)) {
                throw new IllegalStateException("resized CQ ring too small for " + pending.size() + " CQEs");
            }
        }
    }
}
