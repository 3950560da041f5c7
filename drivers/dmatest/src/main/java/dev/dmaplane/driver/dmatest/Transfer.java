package dev.dmaplane.driver.dmatest;

import dev.dmaplane.dmaengine.DmaResult;

/**
 * One transaction dmatest ran on its dmaengine channel and what came of it, as one of dmatest's per-test result
 * lines ({@code drivers/dma/dmatest.c}).
 *
 * @param number     position in the run, from 0
 * @param operation  {@code copy}, {@code fill}, {@code copy to stale IOVA} or {@code copy after the fault}
 * @param source     DMA address (IOVA) the channel read, or for a fill the fill byte
 * @param destination DMA address (IOVA) the channel wrote
 * @param length     bytes
 * @param status     the ordinal of the {@link DmaResult} the transaction's callback reported ({@code
 *                   callback_result}), or -1 when it never ended
 * @param wrongBytes bytes that did not hold what they should after the transfer (source, destination and the
 *                   bytes around the area); 0 when all were checked and right
 * @param error      why the transfer could not be run or checked, or empty
 */
public record Transfer(int number, String operation, long source, long destination, long length, int status,
                       long wrongBytes, String error) {

    /** Whether the transaction ended {@code DMA_TRANS_NOERROR} and every byte checked out. */
    public boolean ok() {
        return status == DmaResult.NOERROR.ordinal() && wrongBytes == 0 && error.isEmpty();
    }

    /** The name of a transaction's result ({@code NOERROR}, {@code WRITE_FAILED} ...) from its ordinal. */
    public static String statusName(int status) {
        DmaResult[] results = DmaResult.values();
        if (status == -1) {
            return "not completed";
        }
        return status >= 0 && status < results.length ? results[status].name() : "status " + status;
    }

    /** One line: {@code #2 copy iova 0xffffe0a3 -> iova 0xfffee1c0 len 0x2f1: NOERROR, verified}. */
    public String describe() {
        String src = operation.equals("fill") ? String.format("byte 0x%02x", source & 0xff) : String.format("iova 0x%x", source);
        String outcome = !error.isEmpty() ? error
                : wrongBytes > 0 ? wrongBytes + " wrong bytes"
                : status == DmaResult.NOERROR.ordinal() ? "verified" : "no byte changed";
        return String.format("#%d %s %s -> iova 0x%x len 0x%x: %s, %s", number, operation, src, destination, length,
                statusName(status), outcome);
    }
}
