package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/**
 * A send-queue work request ({@code struct ibv_send_wr}), one record per opcode. {@code sendFlags} is a
 * {@link SendFlags} mask. Records copy their lists; validation against the QP (type, state, SGE count, inline
 * size, alignment) happens when they are posted, as the providers' {@code post_send} does it.
 */
@ProviderType
public sealed interface SendWr extends WorkRequest permits SendWr.Send, SendWr.SendWithImm, SendWr.SendWithInv,
        SendWr.RdmaWrite, SendWr.RdmaWriteWithImm, SendWr.RdmaRead, SendWr.AtomicCmpAndSwp, SendWr.AtomicFetchAndAdd,
        SendWr.LocalInv, SendWr.BindMw {

    /** The {@link SendFlags} of the request. */
    int sendFlags();

    /** The opcode this record stands for. */
    WrOpcode opcode();

    /** {@code IBV_WR_SEND}; {@code ud} is required on UD QPs and ignored on connected ones. */
    record Send(long wrId, List<Sge> sgList, int sendFlags, UdDestination ud) implements SendWr {
        public Send {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.SEND;
        }
    }

    /** {@code IBV_WR_SEND_WITH_IMM}. */
    record SendWithImm(long wrId, List<Sge> sgList, int sendFlags, int immData, UdDestination ud) implements SendWr {
        public SendWithImm {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.SEND_WITH_IMM;
        }
    }

    /** {@code IBV_WR_SEND_WITH_INV}: the receiver invalidates {@code invalidateRkey} (RC, UC). */
    record SendWithInv(long wrId, List<Sge> sgList, int sendFlags, int invalidateRkey) implements SendWr {
        public SendWithInv {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.SEND_WITH_INV;
        }
    }

    /** {@code IBV_WR_RDMA_WRITE} (RC, UC). */
    record RdmaWrite(long wrId, List<Sge> sgList, int sendFlags, long remoteAddr, int rkey) implements SendWr {
        public RdmaWrite {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.RDMA_WRITE;
        }
    }

    /** {@code IBV_WR_RDMA_WRITE_WITH_IMM}: consumes a receive at the remote QP (RC, UC). */
    record RdmaWriteWithImm(long wrId, List<Sge> sgList, int sendFlags, long remoteAddr, int rkey, int immData)
            implements SendWr {
        public RdmaWriteWithImm {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.RDMA_WRITE_WITH_IMM;
        }
    }

    /** {@code IBV_WR_RDMA_READ} (RC). */
    record RdmaRead(long wrId, List<Sge> sgList, int sendFlags, long remoteAddr, int rkey) implements SendWr {
        public RdmaRead {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.RDMA_READ;
        }
    }

    /**
     * {@code IBV_WR_ATOMIC_CMP_AND_SWP} (RC): 8 bytes at an 8-byte aligned {@code remoteAddr}; the old value lands in
     * the one 8-byte SGE.
     */
    record AtomicCmpAndSwp(long wrId, List<Sge> sgList, int sendFlags, long remoteAddr, int rkey, long compare,
                           long swap) implements SendWr {
        public AtomicCmpAndSwp {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.ATOMIC_CMP_AND_SWP;
        }
    }

    /** {@code IBV_WR_ATOMIC_FETCH_AND_ADD} (RC). */
    record AtomicFetchAndAdd(long wrId, List<Sge> sgList, int sendFlags, long remoteAddr, int rkey, long add)
            implements SendWr {
        public AtomicFetchAndAdd {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.ATOMIC_FETCH_AND_ADD;
        }
    }

    /** {@code IBV_WR_LOCAL_INV}: invalidates a type 2 window (RC, UC). */
    record LocalInv(long wrId, List<Sge> sgList, int sendFlags, int invalidateRkey) implements SendWr {
        public LocalInv {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        public LocalInv(long wrId, int sendFlags, int invalidateRkey) {
            this(wrId, List.of(), sendFlags, invalidateRkey);
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.LOCAL_INV;
        }
    }

    /**
     * {@code IBV_WR_BIND_MW}: binds a type 2 window (RC, UC); {@code rkey} is the window's new key, whose low byte
     * the consumer chooses ({@code ibv_inc_rkey}). Must carry no SGEs.
     */
    record BindMw(long wrId, List<Sge> sgList, int sendFlags, MemoryWindow mw, int rkey, MwBindInfo bindInfo)
            implements SendWr {
        public BindMw {
            sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
        }

        public BindMw(long wrId, int sendFlags, MemoryWindow mw, int rkey, MwBindInfo bindInfo) {
            this(wrId, List.of(), sendFlags, mw, rkey, bindInfo);
        }

        @Override
        public WrOpcode opcode() {
            return WrOpcode.BIND_MW;
        }
    }

    /** {@code ibv_inc_rkey}: the same index with the next 8-bit key. */
    static int incRkey(int rkey) {
        return (rkey & 0xFFFF_FF00) | ((rkey + 1) & 0xFF);
    }
}
