package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeRegs;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

import static dev.dmaplane.vfio.nvme.NvmeAdmin.*;
import static dev.dmaplane.vfio.nvme.NvmeCommand.*;

/**
 * The admin command set (NVM Express Base Specification 2.0, 5; QEMU's {@code nvme_admin_cmd}): queue creation
 * and deletion, Identify, Get/Set Features, Get Log Page, Asynchronous Event Request and Abort. Runs on the
 * device thread under the controller's lock.
 */
final class AdminCommands {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Arbitration: burst 2^3, all weights 0 (round robin only, so they only read back). */
    private static final int ARBITRATION_DEFAULT = 3;
    /** Temperature Threshold: 343 K over-temperature. */
    private static final int TEMP_THRESHOLD_DEFAULT = 343;

    /** The longest Get Log Page transfer without MDTS: the logs are a few KiB, the rest would be zeroes. */
    private static final long MAX_LOG_TRANSFER = 1L << 20;

    private final Controller ctrl;
    /** The data pointer of the admin command running now (admin commands run one at a time, under the lock). */
    private final Prp prp;
    private int arbitration;
    private int powerState;
    private int tempThreshold;
    private int coalescing;
    private int asyncConfig;
    private boolean numQueuesSet;

    AdminCommands(Controller ctrl) {
        this.ctrl = ctrl;
        this.prp = new Prp(ctrl.bus);
    }

    /**
     * The Arbitration feature's burst (bits 2:0, AB): how many commands may be fetched from one submission queue at
     * a time, 2^AB, or no limit ({@link Integer#MAX_VALUE}) for 111b (Base 2.0, 3.4.4 and 5.27.1.1). Under the lock.
     */
    int arbitrationBurst() {
        int ab = arbitration & 7;
        return ab == 7 ? Integer.MAX_VALUE : 1 << ab;
    }

    void resetFeatures() {
        arbitration = ARBITRATION_DEFAULT;
        powerState = 0;
        tempThreshold = TEMP_THRESHOLD_DEFAULT;
        coalescing = 0;
        asyncConfig = 0;
        numQueuesSet = false;
    }

    Result execute(NvmeCommand c, Queues.Sq sq) {
        if (c.flags() != 0) {
            return Result.of(NvmeStatus.INVALID_FIELD); // no fused operations, no SGLs
        }
        return switch (c.opcode()) {
            case ADMIN_CREATE_CQ -> createCq(c);
            case ADMIN_CREATE_SQ -> createSq(c);
            case ADMIN_DELETE_SQ -> deleteSq(c);
            case ADMIN_DELETE_CQ -> deleteCq(c);
            case ADMIN_IDENTIFY -> identify(c);
            case ADMIN_GET_LOG_PAGE -> logPage(c);
            case ADMIN_SET_FEATURES -> setFeatures(c);
            case ADMIN_GET_FEATURES -> getFeatures(c);
            case ADMIN_ASYNC_EVENT -> asyncEvent(c, sq);
            case ADMIN_ABORT -> Result.ok(1); // the command was not aborted: each runs to completion when taken
            default -> Result.of(NvmeStatus.INVALID_OPCODE);
        };
    }

    /** Create I/O Completion Queue (5.4; QEMU's {@code nvme_create_cq}). */
    private Result createCq(NvmeCommand c) {
        int qid = c.cdw10() & 0xffff;
        int entries = (c.cdw10() >>> 16) + 1;
        int vector = c.cdw11() >>> 16;
        boolean ien = (c.cdw11() & CQ_IEN) != 0;
        if (qid == 0 || qid > ctrl.grantedCqs || ctrl.cqs[qid] != null) {
            return Result.of(NvmeStatus.INVALID_QUEUE_IDENTIFIER);
        }
        if (entries < 2 || entries > NvmeRegs.capMqes(ctrl.regs.cap) + 1) {
            return Result.of(NvmeStatus.INVALID_QUEUE_SIZE);
        }
        if ((c.cdw11() & CQ_PC) == 0) {
            return Result.of(NvmeStatus.INVALID_FIELD); // CAP.CQR: queues must be physically contiguous
        }
        if (c.prp1() == 0 || (c.prp1() & (ctrl.regs.pageSize() - 1)) != 0) {
            return Result.of(NvmeStatus.INVALID_PRP_OFFSET);
        }
        if (ien && vector >= ctrl.completions.vectors()) {
            return Result.of(NvmeStatus.INVALID_INTERRUPT_VECTOR);
        }
        ctrl.cqs[qid] = new Queues.Cq(qid, c.prp1(), entries, vector, ien);
        return Result.OK;
    }

    /** Create I/O Submission Queue (5.5; QEMU's {@code nvme_create_sq}). */
    private Result createSq(NvmeCommand c) {
        int qid = c.cdw10() & 0xffff;
        int entries = (c.cdw10() >>> 16) + 1;
        int cqid = c.cdw11() >>> 16;
        if (cqid == 0 || cqid >= ctrl.cqs.length || ctrl.cqs[cqid] == null) {
            return Result.of(NvmeStatus.COMPLETION_QUEUE_INVALID);
        }
        if (qid == 0 || qid > ctrl.grantedSqs || ctrl.sqs[qid] != null) {
            return Result.of(NvmeStatus.INVALID_QUEUE_IDENTIFIER);
        }
        if (entries < 2 || entries > NvmeRegs.capMqes(ctrl.regs.cap) + 1) {
            return Result.of(NvmeStatus.INVALID_QUEUE_SIZE);
        }
        if ((c.cdw11() & SQ_PC) == 0) {
            return Result.of(NvmeStatus.INVALID_FIELD);
        }
        if (c.prp1() == 0 || (c.prp1() & (ctrl.regs.pageSize() - 1)) != 0) {
            return Result.of(NvmeStatus.INVALID_PRP_OFFSET);
        }
        Queues.Cq cq = ctrl.cqs[cqid];
        ctrl.sqs[qid] = new Queues.Sq(qid, c.prp1(), entries, cq);
        cq.sqs++;
        return Result.OK;
    }

    /** Delete I/O Submission Queue (5.7): the command its engine is running completes first, none is left to abort. */
    private Result deleteSq(NvmeCommand c) {
        int qid = c.cdw10() & 0xffff;
        if (qid == 0 || qid >= ctrl.sqs.length || ctrl.sqs[qid] == null) {
            return Result.of(NvmeStatus.INVALID_QUEUE_IDENTIFIER);
        }
        ctrl.drain(ctrl.sqs[qid]);
        ctrl.sqs[qid].cq.sqs--;
        ctrl.sqs[qid] = null;
        return Result.OK;
    }

    /** Delete I/O Completion Queue (5.6): refused while a submission queue still completes into it. */
    private Result deleteCq(NvmeCommand c) {
        int qid = c.cdw10() & 0xffff;
        if (qid == 0 || qid >= ctrl.cqs.length || ctrl.cqs[qid] == null) {
            return Result.of(NvmeStatus.INVALID_QUEUE_IDENTIFIER);
        }
        if (ctrl.cqs[qid].sqs > 0) {
            return Result.of(NvmeStatus.INVALID_QUEUE_DELETION);
        }
        ctrl.cqs[qid] = null;
        return Result.OK;
    }

    /** Identify (5.17): CNS 0 a namespace, 1 the controller, 2 the active namespace IDs above NSID. */
    private Result identify(NvmeCommand c) {
        MemorySegment d = MemorySegment.ofArray(new byte[IDENTIFY_SIZE]);
        int nn = ctrl.cfg.namespaces();
        switch (c.cdw10() & 0xff) {
            case CNS_NAMESPACE -> {
                if (c.nsid() <= 0 || c.nsid() > nn) {
                    return Result.of(NvmeStatus.INVALID_NAMESPACE);
                }
                long blocks = ctrl.cfg.namespaceSize() >>> ctrl.cfg.lbaShift();
                d.set(U64, IDN_NSZE, blocks);
                d.set(U64, IDN_NCAP, blocks);
                d.set(U64, IDN_NUSE, blocks);
                d.set(ValueLayout.JAVA_BYTE, IDN_DLFEAT, (byte) 1);
                d.set(U32, IDN_LBAF0, ctrl.cfg.lbaShift() << 16);
            }
            case CNS_CONTROLLER -> controller(d);
            case CNS_ACTIVE_NAMESPACES -> {
                if (Integer.compareUnsigned(c.nsid(), 0xffff_fffe) >= 0) {
                    return Result.of(NvmeStatus.INVALID_NAMESPACE);
                }
                int at = 0;
                for (long ns = Integer.toUnsignedLong(c.nsid()) + 1; ns <= nn && at < IDENTIFY_SIZE / 4; ns++) {
                    d.set(U32, 4L * at++, (int) ns); // NSIDs are unsigned: none above 7FFFFFFFh is active
                }
            }
            default -> {
                return Result.of(NvmeStatus.INVALID_FIELD);
            }
        }
        return Result.of(ctrl.toHost(prp, c, d));
    }

    private void controller(MemorySegment d) {
        var fn = ctrl.ctx.function();
        d.set(U16, IDC_VID, (short) fn.vendorId());
        d.set(U16, IDC_SSVID, (short) fn.subsystemVendorId());
        ascii(d, IDC_SN, 20, "DMAPLANE" + fn.bdf().toString().replaceAll("[^0-9a-f]", ""));
        ascii(d, IDC_MN, 40, "dmaplane emulated NVMe controller");
        ascii(d, IDC_FR, 8, "1.0");
        d.set(ValueLayout.JAVA_BYTE, IDC_MDTS, (byte) ctrl.cfg.mdts());
        d.set(U32, IDC_VER, NvmeRegs.VS_2_0);
        d.set(ValueLayout.JAVA_BYTE, IDC_ACL, (byte) 3);
        d.set(ValueLayout.JAVA_BYTE, IDC_AERL, (byte) Controller.AERL);
        d.set(ValueLayout.JAVA_BYTE, IDC_ELPE, (byte) Controller.ELPE);
        d.set(ValueLayout.JAVA_BYTE, IDC_SQES, (byte) 0x66);
        d.set(ValueLayout.JAVA_BYTE, IDC_CQES, (byte) 0x44);
        d.set(U32, IDC_NN, ctrl.cfg.namespaces());
        d.set(U16, IDC_ONCS, (short) (ONCS_DSM | ONCS_WRITE_ZEROES));
        byte[] nqn = ("nqn.2026-12.dev.dmaplane:nvme:" + fn.bdf()).getBytes(StandardCharsets.US_ASCII);
        MemorySegment.copy(nqn, 0, d, ValueLayout.JAVA_BYTE, IDC_SUBNQN, nqn.length);
    }

    /** An ASCII field padded with spaces, as Identify's strings are. */
    private static void ascii(MemorySegment d, int offset, int length, String s) {
        byte[] b = String.format("%-" + length + "." + length + "s", s).getBytes(StandardCharsets.US_ASCII);
        MemorySegment.copy(b, 0, d, ValueLayout.JAVA_BYTE, offset, length);
    }

    /**
     * Get Log Page (5.16): Error Information and SMART / Health Information, from a dword-aligned offset; a
     * transfer over MDTS (or over 1 MiB without one) is an Invalid Field.
     */
    private Result logPage(NvmeCommand c) {
        int lid = c.cdw10() & 0xff;
        long dwords = ((long) (c.cdw11() & 0xffff) << 16 | c.cdw10() >>> 16) + 1;
        long offset = Integer.toUnsignedLong(c.cdw12()) | (long) c.cdw13() << 32;
        byte[] log = switch (lid) {
            case LOG_ERROR -> ctrl.health.errorLog();
            case LOG_SMART -> ctrl.health.smartLog();
            default -> null;
        };
        if (log == null) {
            return Result.of(NvmeStatus.INVALID_LOG_PAGE);
        }
        long length = dwords * 4;
        if ((offset & 3) != 0 || Long.compareUnsigned(offset, log.length) >= 0
                || length > Math.min(ctrl.cfg.maxTransfer(), MAX_LOG_TRANSFER)) {
            return Result.of(NvmeStatus.INVALID_FIELD);
        }
        MemorySegment data = MemorySegment.ofArray(new byte[(int) length]);
        int n = (int) Math.min(length, log.length - offset);
        MemorySegment.copy(log, (int) offset, data, ValueLayout.JAVA_BYTE, 0, n);
        return Result.of(ctrl.toHost(prp, c, data));
    }

    /** Set Features (5.27): nothing is saveable; Number of Queues grants at most the controller's queues. */
    private Result setFeatures(NvmeCommand c) {
        if ((c.cdw10() & FEAT_SAVE) != 0) {
            return Result.of(NvmeStatus.FEATURE_NOT_SAVEABLE);
        }
        int v = c.cdw11();
        switch (c.cdw10() & 0xff) {
            case FEAT_ARBITRATION -> arbitration = v & 0xffff_ff07;
            case FEAT_POWER_MGMT -> {
                if ((v & 0x1f) != 0) {
                    return Result.of(NvmeStatus.INVALID_FIELD); // one power state
                }
                powerState = v & 0xff;
            }
            case FEAT_TEMP_THRESHOLD -> tempThreshold = v & 0xffff;
            case FEAT_NUM_QUEUES -> {
                int nsqr = v & 0xffff;
                int ncqr = v >>> 16;
                if (nsqr == 0xffff || ncqr == 0xffff) {
                    return Result.of(NvmeStatus.INVALID_FIELD);
                }
                if (!numQueuesSet) {
                    ctrl.grantedSqs = Math.min(nsqr + 1, ctrl.cfg.ioQueues());
                    ctrl.grantedCqs = Math.min(ncqr + 1, ctrl.cfg.ioQueues());
                    numQueuesSet = true; // the allocation holds until the next controller reset
                }
                return Result.ok(numQueues());
            }
            case FEAT_IRQ_COALESCING -> coalescing = v & 0xffff;
            case FEAT_IRQ_CONFIG -> {
                if ((v & 0xffff) >= ctrl.completions.vectors()) {
                    return Result.of(NvmeStatus.INVALID_FIELD);
                }
            }
            case FEAT_ASYNC_EVENT -> asyncConfig = v;
            default -> {
                return Result.of(NvmeStatus.INVALID_FIELD);
            }
        }
        return Result.OK;
    }

    /** Get Features (5.14): current, default, saved (the default: nothing is saveable) or capabilities. */
    private Result getFeatures(NvmeCommand c) {
        int fid = c.cdw10() & 0xff;
        int sel = c.cdw10() >>> 8 & 7;
        if (sel > SEL_CAPABILITIES) {
            return Result.of(NvmeStatus.INVALID_FIELD);
        }
        boolean dflt = sel == SEL_DEFAULT || sel == SEL_SAVED;
        int value;
        switch (fid) {
            case FEAT_ARBITRATION -> value = dflt ? ARBITRATION_DEFAULT : arbitration;
            case FEAT_POWER_MGMT -> value = dflt ? 0 : powerState;
            case FEAT_TEMP_THRESHOLD -> value = dflt ? TEMP_THRESHOLD_DEFAULT : tempThreshold;
            case FEAT_NUM_QUEUES -> value = dflt ? (ctrl.cfg.ioQueues() - 1) * 0x10001 : numQueues();
            case FEAT_IRQ_COALESCING -> value = dflt ? 0 : coalescing;
            case FEAT_IRQ_CONFIG -> {
                int iv = c.cdw11() & 0xffff;
                if (iv >= ctrl.completions.vectors()) {
                    return Result.of(NvmeStatus.INVALID_FIELD);
                }
                value = iv;
            }
            case FEAT_ASYNC_EVENT -> value = dflt ? 0 : asyncConfig;
            default -> {
                return Result.of(NvmeStatus.INVALID_FIELD);
            }
        }
        return Result.ok(sel == SEL_CAPABILITIES ? 0b100 : value); // changeable, not saveable, not per namespace
    }

    private int numQueues() {
        return (ctrl.grantedCqs - 1) << 16 | (ctrl.grantedSqs - 1);
    }

    /** Asynchronous Event Request (5.2): held until an event; more than AERL + 1 outstanding is refused. */
    private Result asyncEvent(NvmeCommand c, Queues.Sq sq) {
        if (!ctrl.asyncEvents.hold(c.cid())) {
            return Result.of(NvmeStatus.ASYNC_EVENT_LIMIT_EXCEEDED);
        }
        sq.outstanding.add(c.cid());
        return Result.DEFERRED;
    }
}
