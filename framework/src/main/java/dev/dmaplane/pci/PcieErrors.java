package dev.dmaplane.pci;

import java.util.Optional;
import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * How a completer logs an error in a request it received (PCIe Base Spec 6.2.5, the error signalling and logging
 * flowchart): Device Status detected bits whatever the masks say (7.5.3.5), the AER status bit, and for an unmasked
 * error the header of the TLP and the First Error Pointer (7.8.4.7-8). An Unsupported Request or Completer Abort that
 * a completer answers with a completion at non-fatal severity is an Advisory Non-Fatal error (6.2.3.2.4.1): logged
 * as uncorrectable, signalled as correctable. A Completer Abort sets Signaled Target Abort in Status (7.5.1.1.4).
 * <p>
 * An unmasked error the Device Control reporting enables allow is signalled as ERR_COR, ERR_NONFATAL or ERR_FATAL
 * (6.2.5; an Unsupported Request only with Unsupported Request Reporting Enable, ERR_NONFATAL/FATAL also under SERR#
 * Enable, which then sets Signaled System Error, 7.5.1.1.4). The message reaches the root port above, which records
 * it in Root Error Status and Error Source Identification (7.8.4.10-11) whether or not Root Error Command enables its
 * interrupt.
 */
final class PcieErrors {
    /** TLP Fmt: 3 DW header without data (MRd32), 4 DW without data (MRd64), 3 DW with data, 4 DW with data. */
    private static final int FMT_3DW = 0b000;
    private static final int FMT_4DW = 0b001;
    private static final int FMT_DATA = 0b010;
    /** Requester ID of a request the CPU issues through the root complex (the host bridge, 00:00.0). */
    static final int ROOT_COMPLEX_ID = 0;

    private PcieErrors() {
    }

    /**
     * {@code cs}'s function received a memory request from {@code requesterId} for {@code size} bytes at {@code addr}
     * it cannot complete; {@code error} is the AER bit it logs.
     */
    static void memoryRequestError(ConfigSpace cs, int requesterId, int error, long addr, int size, boolean posted) {
        completerDetected(cs, error, posted, memoryHeader(requesterId, addr, size, posted));
    }

    /**
     * The requester {@code cs} received an Unsupported Request completion for a non-posted request: Received Master
     * Abort in its Status (PCIe Base Spec 7.5.1.1.4; the completer logged the error, 6.2.3.2.5).
     */
    static void unsupportedCompletion(ConfigSpace cs) {
        synchronized (cs) {
            if (cs.present()) {
                cs.hardwareUpdate(STATUS, 2, STATUS_REC_MASTER_ABORT, true);
            }
        }
    }

    /**
     * A configuration request to the absent function of {@code cs} found nothing to complete it: the bridge above
     * receives an Unsupported Request completion on its secondary side and sets Received Master Abort in its
     * Secondary Status (PCIe Base Spec 7.5.1.3.7, the {@code <MAbort+} lspci shows on a port above an empty slot).
     */
    static void configRequestUnsupported(ConfigSpace cs) {
        cs.owner().flatMap(PciFunction::upstreamBridge).ifPresent(bridge ->
                bridge.configSpace().hardwareUpdate(SEC_STATUS, 2, STATUS_REC_MASTER_ABORT, true));
    }

    /** Error messages (PCIe Base Spec 2.2.8.3). */
    private enum Message { ERR_COR, ERR_NONFATAL, ERR_FATAL }

    private static void completerDetected(ConfigSpace cs, int error, boolean posted, int[] header) {
        Message sent = log(cs, error, posted, header);
        if (sent != null) {
            cs.owner().ifPresent(fn -> rootPortReceives(fn, sent));
        }
    }

    /** Logs the error in {@code cs}; returns the message the function sends for it, or null. */
    private static Message log(ConfigSpace cs, int error, boolean posted, int[] header) {
        synchronized (cs) {
            if (!cs.present()) {
                return null;
            }
            if (error == ERR_UNC_COMP_ABORT) {
                cs.hardwareUpdate(STATUS, 2, STATUS_SIG_TARGET_ABORT, true);
            }
            OptionalInt exp = cs.findCapability(CAP_ID_EXP);
            if (exp.isEmpty()) {
                return null;
            }
            OptionalInt aer = cs.findExtCapability(EXT_CAP_ID_ERR);
            boolean fatal = aer.isPresent() && (cs.read(aer.getAsInt() + ERR_UNCOR_SEVER, 4) & error) != 0;
            boolean advisory = !fatal && !posted && (error == ERR_UNC_UNSUP || error == ERR_UNC_COMP_ABORT);
            int devsta = (advisory ? EXP_DEVSTA_CED : fatal ? EXP_DEVSTA_FED : EXP_DEVSTA_NFED)
                    | (error == ERR_UNC_UNSUP ? EXP_DEVSTA_URD : 0);
            cs.hardwareUpdate(exp.getAsInt() + EXP_DEVSTA, 2, devsta, true);
            int devctl = cs.read(exp.getAsInt() + EXP_DEVCTL, 2);
            Message message = advisory ? Message.ERR_COR : fatal ? Message.ERR_FATAL : Message.ERR_NONFATAL;
            if (aer.isEmpty()) {
                return signalled(cs, message, error, devctl, false);
            }
            int pos = aer.getAsInt();
            int before = cs.read(pos + ERR_UNCOR_STATUS, 4);
            cs.hardwareUpdate(pos + ERR_UNCOR_STATUS, 4, error, true);
            if (advisory) {
                cs.hardwareUpdate(pos + ERR_COR_STATUS, 4, ERR_COR_ADV_NFAT, true);
            }
            boolean masked = (cs.read(pos + ERR_UNCOR_MASK, 4) & error) != 0
                    || advisory && (cs.read(pos + ERR_COR_MASK, 4) & ERR_COR_ADV_NFAT) != 0;
            int fep = cs.read(pos + ERR_CAP, 4) & ERR_CAP_FEP;
            boolean logHeld = (before & (1 << fep)) != 0;
            if (!masked && !logHeld) {
                cs.hardwareUpdate(pos + ERR_CAP, 4, ERR_CAP_FEP, false);
                cs.hardwareUpdate(pos + ERR_CAP, 4, Integer.numberOfTrailingZeros(error), true);
                for (int i = 0; i < 4; i++) {
                    cs.hardwareUpdate(pos + ERR_HEADER_LOG + 4 * i, 4, -1, false);
                    cs.hardwareUpdate(pos + ERR_HEADER_LOG + 4 * i, 4, header[i], true);
                }
            }
            return signalled(cs, message, error, devctl, masked);
        }
    }

    /** Whether the Device Control and Command enables let {@code message} out (6.2.5); Signaled System Error if so. */
    private static Message signalled(ConfigSpace cs, Message message, int error, int devctl, boolean masked) {
        if (masked || error == ERR_UNC_UNSUP && (devctl & EXP_DEVCTL_URRE) == 0) {
            return null;
        }
        boolean serr = (cs.command() & COMMAND_SERR) != 0;
        boolean enabled = switch (message) {
            case ERR_COR -> (devctl & EXP_DEVCTL_CERE) != 0;
            case ERR_NONFATAL -> (devctl & EXP_DEVCTL_NFERE) != 0 || serr;
            case ERR_FATAL -> (devctl & EXP_DEVCTL_FERE) != 0 || serr;
        };
        if (!enabled) {
            return null;
        }
        if (message != Message.ERR_COR && serr) {
            cs.hardwareUpdate(STATUS, 2, STATUS_SIG_SYSTEM_ERROR, true);
        }
        return message;
    }

    /**
     * The root port above {@code source} (or {@code source} itself) receives its error message: Root Error Status
     * records the first and any further ones, Error Source Identification the sender of the first (7.8.4.10-11).
     * When Root Error Command enables reporting of that kind (7.8.4.9), the port interrupts: it raises vector 0 of
     * its MSI, the Advanced Error Interrupt Message Number of its single vector (6.2.4.1.2), which the MSI capability
     * drops while MSI Enable is clear.
     */
    private static void rootPortReceives(PciFunction source, Message message) {
        Optional<PciFunction> at = Optional.of(source);
        while (at.isPresent() && at.get().portType().orElse(null) != PciPortType.ROOT_PORT) {
            at = at.get().upstreamBridge();
        }
        if (at.isEmpty()) {
            return;
        }
        if (record(at.get().configSpace(), source, message)) {
            at.get().msi().ifPresent(msi -> msi.raise(0));
        }
    }

    /** Records {@code message} in the root port's registers; whether Root Error Command enables its interrupt. */
    private static boolean record(ConfigSpace rp, PciFunction source, Message message) {
        synchronized (rp) {
            OptionalInt aer = rp.findExtCapability(EXT_CAP_ID_ERR);
            if (aer.isEmpty()) {
                return false;
            }
            int pos = aer.getAsInt();
            int status = rp.read(pos + ERR_ROOT_STATUS, 4);
            int id = source.bdf().requesterId();
            int enable = switch (message) {
                case ERR_COR -> ERR_ROOT_CMD_COR_EN;
                case ERR_NONFATAL -> ERR_ROOT_CMD_NONFATAL_EN;
                case ERR_FATAL -> ERR_ROOT_CMD_FATAL_EN;
            };
            boolean interrupt = (rp.read(pos + ERR_ROOT_COMMAND, 4) & enable) != 0;
            if (message == Message.ERR_COR) {
                if ((status & ERR_ROOT_COR_RCV) != 0) {
                    rp.hardwareUpdate(pos + ERR_ROOT_STATUS, 4, ERR_ROOT_MULTI_COR_RCV, true);
                } else {
                    rp.hardwareUpdate(pos + ERR_ROOT_STATUS, 4, ERR_ROOT_COR_RCV, true);
                    rp.hardwareUpdate(pos + ERR_ROOT_ERR_SRC, 2, 0xFFFF, false);
                    rp.hardwareUpdate(pos + ERR_ROOT_ERR_SRC, 2, id, true);
                }
                return interrupt;
            }
            boolean fatal = message == Message.ERR_FATAL;
            int bits = fatal ? ERR_ROOT_FATAL_RCV : ERR_ROOT_NONFATAL_RCV;
            if ((status & ERR_ROOT_UNCOR_RCV) != 0) {
                bits |= ERR_ROOT_MULTI_UNCOR_RCV;
            } else {
                bits |= ERR_ROOT_UNCOR_RCV | (fatal ? ERR_ROOT_FIRST_FATAL : 0);
                rp.hardwareUpdate(pos + ERR_ROOT_ERR_SRC + 2, 2, 0xFFFF, false);
                rp.hardwareUpdate(pos + ERR_ROOT_ERR_SRC + 2, 2, id, true);
            }
            rp.hardwareUpdate(pos + ERR_ROOT_STATUS, 4, bits, true);
            return interrupt;
        }
    }

    /**
     * The header of a memory read or write TLP (PCIe Base Spec 2.2.7): Fmt/Type and Length, the Requester ID and byte
     * enables, then the address, in 3 DWs below 4 GiB and 4 above, as the Header Log holds it (byte 0 in bits 31:24).
     */
    private static int[] memoryHeader(int requesterId, long addr, int size, boolean posted) {
        boolean wide = (addr >>> 32) != 0;
        int fmt = (wide ? FMT_4DW : FMT_3DW) | (posted ? FMT_DATA : 0);
        int skip = (int) addr & 3;
        int end = (skip + size) & 3;
        int lengthDw = (skip + size + 3) / 4;
        int firstBe = lengthDw == 1 ? ((1 << size) - 1) << skip : 0xF << skip & 0xF;
        int lastBe = lengthDw == 1 ? 0 : end == 0 ? 0xF : (1 << end) - 1;
        int dw0 = fmt << 29 | lengthDw & 0x3FF; // a Length of 1024 DW is encoded as 0
        int dw1 = requesterId << 16 | lastBe << 4 | firstBe;
        int lo = (int) addr & ~3;
        return wide ? new int[]{dw0, dw1, (int) (addr >>> 32), lo} : new int[]{dw0, dw1, lo, 0};
    }
}
