package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.AtomicCap;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WrOpcode;

import java.util.List;

/**
 * The checks of a send work request at post time ({@code validate_send_wr} in {@code rxe_verbs.c}) with the table of
 * the opcodes each QP type takes ({@code rxe_wr_opcode_info} in {@code rxe_opcode.c}), and the objects a request
 * names, checked as {@code init_send_wqe} captures them.
 */
final class SendWrChecks {
    private SendWrChecks() {
    }

    /** Opcodes each QP type takes ({@code rxe_wr_opcode_info}); send with invalidate has no UD packet in the IBTA. */
    private static boolean opcodeValid(WrOpcode op, QpType t) {
        return switch (op) {
            case SEND, SEND_WITH_IMM -> true;
            case SEND_WITH_INV, RDMA_WRITE, RDMA_WRITE_WITH_IMM, LOCAL_INV, BIND_MW -> t != QpType.UD;
            case RDMA_READ, ATOMIC_CMP_AND_SWP, ATOMIC_FETCH_AND_ADD -> t == QpType.RC;
        };
    }

    private static boolean inlineCapable(WrOpcode op) {
        return op == WrOpcode.SEND || op == WrOpcode.SEND_WITH_IMM || op == WrOpcode.SEND_WITH_INV
                || op == WrOpcode.RDMA_WRITE || op == WrOpcode.RDMA_WRITE_WITH_IMM;
    }

    /**
     * {@code validate_send_wr}: opcode, flags, atomics, SGE count, length and inline data of {@code wr} on a
     * {@code type} QP with {@code cap} on a device with {@code dev}; returns the message length.
     */
    static long check(SendWr wr, QpType type, QpCap cap, String devName, DeviceAttr dev) {
        WrOpcode op = wr.opcode();
        if (!opcodeValid(op, type)) {
            throw new ErrnoException(Errno.EINVAL, op + " is not valid on a " + type + " QP");
        }
        if ((wr.sendFlags() & ~SendFlags.ALL) != 0) {
            throw new ErrnoException(Errno.EINVAL, "unknown send flags 0x" + Integer.toHexString(wr.sendFlags()));
        }
        if (op.isAtomic() && dev.atomicCap() == AtomicCap.NONE) {
            throw new ErrnoException(Errno.EINVAL, devName + " has no atomics");
        }
        List<Sge> sges = wr.sgList();
        int maxSge = op == WrOpcode.RDMA_READ ? Math.min(cap.maxSendSge(), dev.maxSgeRd()) : cap.maxSendSge();
        if (sges.size() > maxSge) {
            throw new ErrnoException(Errno.EINVAL, sges.size() + " SGEs exceed max_send_sge " + maxSge);
        }
        long length = wr.totalLength();
        if (length > 1L << 31) {
            throw new ErrnoException(Errno.EINVAL, "message length " + length + " exceeds 2 GiB");
        }
        switch (wr) {
            case SendWr.AtomicCmpAndSwp a -> checkAtomic(length, a.remoteAddr());
            case SendWr.AtomicFetchAndAdd a -> checkAtomic(length, a.remoteAddr());
            default -> {
            }
        }
        if ((wr.sendFlags() & SendFlags.INLINE) != 0) {
            if (!inlineCapable(op)) {
                throw new ErrnoException(Errno.EINVAL, op + " cannot carry inline data");
            }
            if (length > cap.maxInlineData()) {
                throw new ErrnoException(Errno.EINVAL, "inline length " + length + " exceeds max_inline_data " + cap.maxInlineData());
            }
        }
        return length;
    }

    private static void checkAtomic(long length, long remoteAddr) {
        if (length != 8) {
            throw new ErrnoException(Errno.EINVAL, "atomic length " + length + " is not 8");
        }
        if ((remoteAddr & 7) != 0) {
            throw new ErrnoException(Errno.EINVAL, "atomic address 0x" + Long.toHexString(remoteAddr) + " is not 8-byte aligned");
        }
    }

    /** The address handle of a UD send, usable in {@code ctx}, with a 24-bit remote QPN. */
    static AhImpl udAh(ContextImpl ctx, SendWr wr) {
        var ud = switch (wr) {
            case SendWr.Send s -> s.ud();
            case SendWr.SendWithImm s -> s.ud();
            default -> null;
        };
        if (ud == null || !(ud.ah() instanceof AhImpl a)) {
            throw new ErrnoException(Errno.EINVAL, "a UD send needs an address handle of this core");
        }
        a.checkUsable(ctx, "address handle");
        if ((ud.remoteQpn() & ~0xFF_FFFF) != 0) {
            throw new ErrnoException(Errno.EINVAL, "remote QPN 0x" + Integer.toHexString(ud.remoteQpn()) + " exceeds 24 bits");
        }
        return a;
    }

    /**
     * The window a BIND_MW request binds, usable in {@code ctx}, to a region of this core; a type 1 window only from
     * {@code ibv_bind_mw} ({@code internal}).
     */
    static MwImpl bindWindow(ContextImpl ctx, SendWr.BindMw b, boolean internal) {
        if (!b.sgList().isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "a BIND_MW work request carries no SGEs");
        }
        if (!(b.mw() instanceof MwImpl mw) || b.bindInfo() == null) {
            throw new ErrnoException(Errno.EINVAL, "BIND_MW needs a window of this core and bind info");
        }
        mw.checkUsable(ctx, "memory window");
        if (mw.type() == MwType.TYPE_1 && !internal) {
            throw new ErrnoException(Errno.EINVAL, "type 1 windows are bound with ibv_bind_mw, not a BIND_MW work request");
        }
        if (b.bindInfo().mr() != null && !(b.bindInfo().mr() instanceof MrImpl)) {
            throw new ErrnoException(Errno.EINVAL, "BIND_MW to a region not of this core");
        }
        return mw;
    }
}
