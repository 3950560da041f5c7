package dev.dmaplane.driver.dmatest;

import dev.dmaplane.hw.copyengine.CopyEngineRegs;

/**
 * One descriptor dmatest gave the copy engine and what came of it, as one of dmatest's per-test result lines.
 *
 * @param number     position in the run, from 0
 * @param operation  {@code copy}, {@code fill} or {@code copy to stale IOVA}
 * @param source     bus address (IOVA) the engine read, or for a fill the fill byte
 * @param destination bus address (IOVA) the engine wrote
 * @param length     bytes
 * @param status     the status the engine wrote back into the descriptor ({@code CopyEngineRegs.ST_*}), or -1
 *                   when the descriptor never completed
 * @param wrongBytes bytes that did not hold what they should after the transfer (source, destination and the
 *                   bytes around the area); 0 when all were checked and right
 * @param error      why the transfer could not be run or checked, or empty
 */
public record Transfer(int number, String operation, long source, long destination, long length, int status,
                       long wrongBytes, String error) {

    /** Whether the engine completed the descriptor and every byte checked out. */
    public boolean ok() {
        return status == CopyEngineRegs.ST_OK && wrongBytes == 0 && error.isEmpty();
    }

    /** The name of a descriptor status ({@code ST_OK}, {@code ST_WRITE_FAULT} ...). */
    public static String statusName(int status) {
        return switch (status) {
            case CopyEngineRegs.ST_PENDING -> "ST_PENDING";
            case CopyEngineRegs.ST_OK -> "ST_OK";
            case CopyEngineRegs.ST_READ_FAULT -> "ST_READ_FAULT";
            case CopyEngineRegs.ST_WRITE_FAULT -> "ST_WRITE_FAULT";
            case CopyEngineRegs.ST_BAD_DESC -> "ST_BAD_DESC";
            case -1 -> "not completed";
            default -> "status " + status;
        };
    }

    /** One line: {@code #2 copy iova 0xffffe0a3 -> 0xfffee1c0 len 0x2f1: ST_OK, verified}. */
    public String describe() {
        String src = operation.equals("fill") ? String.format("byte 0x%02x", source & 0xff) : String.format("iova 0x%x", source);
        String outcome = !error.isEmpty() ? error
                : wrongBytes > 0 ? wrongBytes + " wrong bytes"
                : status == CopyEngineRegs.ST_OK ? "verified" : "no byte changed";
        return String.format("#%d %s %s -> iova 0x%x len 0x%x: %s, %s", number, operation, src, destination, length,
                statusName(status), outcome);
    }
}
