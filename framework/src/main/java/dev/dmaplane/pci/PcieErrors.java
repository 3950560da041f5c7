package dev.dmaplane.pci;

import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * How a completer logs an error in a request it received (PCIe Base Spec 6.2.5, the error signalling and logging
 * flowchart): Device Status detected bits whatever the masks say (7.5.3.5), the AER status bit, and for an unmasked
 * error the header of the TLP and the First Error Pointer (7.8.4.7-8). An Unsupported Request or Completer Abort that
 * a completer answers with a completion at non-fatal severity is an Advisory Non-Fatal error (6.2.3.2.4.1): logged
 * as uncorrectable, signalled as correctable. A Completer Abort sets Signaled Target Abort in Status (7.5.1.1.4).
 */
final class PcieErrors {
    /** TLP Fmt: 3 DW header without data (MRd32), 4 DW without data (MRd64), 3 DW with data, 4 DW with data. */
    private static final int FMT_3DW = 0b000;
    private static final int FMT_4DW = 0b001;
    private static final int FMT_DATA = 0b010;
    /** Requester ID of a request the CPU issues through the root complex (the host bridge, 00:00.0). */
    private static final int ROOT_COMPLEX_ID = 0;

    private PcieErrors() {
    }

    /** {@code cs}'s function received a memory request for {@code size} bytes at {@code addr} it cannot complete. */
    static void memoryRequestError(ConfigSpace cs, int error, long addr, int size, boolean posted) {
        completerDetected(cs, error, posted, memoryHeader(addr, size, posted));
    }

    private static void completerDetected(ConfigSpace cs, int error, boolean posted, int[] header) {
        synchronized (cs) {
            if (!cs.present()) {
                return;
            }
            if (error == ERR_UNC_COMP_ABORT) {
                cs.hardwareUpdate(STATUS, 2, STATUS_SIG_TARGET_ABORT, true);
            }
            OptionalInt exp = cs.findCapability(CAP_ID_EXP);
            if (exp.isEmpty()) {
                return;
            }
            OptionalInt aer = cs.findExtCapability(EXT_CAP_ID_ERR);
            boolean fatal = aer.isPresent() && (cs.read(aer.getAsInt() + ERR_UNCOR_SEVER, 4) & error) != 0;
            boolean advisory = !fatal && !posted && (error == ERR_UNC_UNSUP || error == ERR_UNC_COMP_ABORT);
            int devsta = (advisory ? EXP_DEVSTA_CED : fatal ? EXP_DEVSTA_FED : EXP_DEVSTA_NFED)
                    | (error == ERR_UNC_UNSUP ? EXP_DEVSTA_URD : 0);
            cs.hardwareUpdate(exp.getAsInt() + EXP_DEVSTA, 2, devsta, true);
            if (aer.isEmpty()) {
                return;
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
        }
    }

    /**
     * The header of a memory read or write TLP (PCIe Base Spec 2.2.7): Fmt/Type and Length, Requester ID and byte
     * enables, then the address, in 3 DWs below 4 GiB and 4 above, as the Header Log holds it (byte 0 in bits 31:24).
     */
    private static int[] memoryHeader(long addr, int size, boolean posted) {
        boolean wide = (addr >>> 32) != 0;
        int fmt = (wide ? FMT_4DW : FMT_3DW) | (posted ? FMT_DATA : 0);
        int lengthDw = Math.max(1, size / 4);
        int firstBe = size >= 4 ? 0xF : ((1 << size) - 1) << (addr & 3);
        int lastBe = lengthDw > 1 ? 0xF : 0;
        int dw0 = fmt << 29 | lengthDw;
        int dw1 = ROOT_COMPLEX_ID << 16 | lastBe << 4 | firstBe;
        int lo = (int) addr & ~3;
        return wide ? new int[]{dw0, dw1, (int) (addr >>> 32), lo} : new int[]{dw0, dw1, lo, 0};
    }
}
