package dev.dmaplane.driver.dmatest;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The outcome of dmatest's self test on one device (the summary line {@code dmatest: summary N tests, F failures}
 * of {@code drivers/dma/dmatest.c}, with the transfers behind it). Registered as an OSGi service of this type
 * while the driver is bound to the device, with {@link #properties()} as service properties.
 *
 * @param device        the name of the channel's device (the PCI function whose DMA the channel does)
 * @param tests         transfers run (copies and fills, not counting the fault check)
 * @param failures      transfers that did not complete or left a wrong byte
 * @param bytesCopied   bytes the channel copied in completed copies
 * @param bytesFilled   bytes the channel filled in completed fills
 * @param bytesVerified bytes the CPU compared against the expected pattern after the transfers
 * @param ringIova      bus address of the client's descriptor ring: always -1, a dmaengine client has none (the
 *                      channel's driver owns its ring)
 * @param transfers     each transaction and its outcome, in order
 * @param faultCheck    the use-after-unmap check
 */
public record DmaTestResult(String device, int tests, int failures, long bytesCopied, long bytesFilled,
                            long bytesVerified, long ringIova, List<Transfer> transfers, FaultCheck faultCheck) {

    /** Service property: the device name. */
    public static final String DEVICE = "dmatest.device";
    /** Service property ({@code Integer}): transfers run. */
    public static final String TESTS = "dmatest.tests";
    /** Service property ({@code Integer}): failed transfers. */
    public static final String FAILURES = "dmatest.failures";
    /** Service property ({@code Long}). */
    public static final String BYTES_COPIED = "dmatest.bytesCopied";
    /** Service property ({@code Long}). */
    public static final String BYTES_FILLED = "dmatest.bytesFilled";
    /** Service property ({@code Long}). */
    public static final String BYTES_VERIFIED = "dmatest.bytesVerified";
    /** Service property ({@code Long}): the client's descriptor ring IOVA, -1 (see {@link #ringIova()}). */
    public static final String RING_IOVA = "dmatest.ringIova";
    /** Service property ({@code String[]}): {@link Transfer#describe()} of each transfer. */
    public static final String TRANSFERS = "dmatest.transfers";
    /** Service property ({@code String}): {@code PASSED}, {@code FAILED} or {@code SKIPPED}. */
    public static final String FAULT_CHECK = "dmatest.faultCheck";
    /** Service property ({@code Long}): the stale IOVA of the fault check, -1 when skipped. */
    public static final String FAULT_IOVA = "dmatest.faultIova";
    /** Service property ({@code String}): the name of the result its callback reported ({@code WRITE_FAILED}). */
    public static final String FAULT_STATUS = "dmatest.faultStatus";
    /** Service property ({@code Long}): bytes of the formerly mapped page that changed. */
    public static final String FAULT_BYTES_CHANGED = "dmatest.faultBytesChanged";
    /** Service property ({@code String}): {@link FaultCheck#detail()}. */
    public static final String FAULT_DETAIL = "dmatest.faultDetail";
    /** Service property ({@code String}): {@link #summary()}. */
    public static final String SUMMARY = "dmatest.summary";

    public DmaTestResult {
        transfers = List.copyOf(transfers);
    }

    /** Whether every transfer worked and the fault check did not fail. */
    public boolean passed() {
        return failures == 0 && faultCheck.outcome() != FaultCheck.Outcome.FAILED;
    }

    /** dmatest's summary line. */
    public String summary() {
        return String.format("summary %d tests, %d failures, %d bytes copied, %d filled, %d verified; fault check %s",
                tests, failures, bytesCopied, bytesFilled, bytesVerified, faultCheck.outcome());
    }

    /** The result in JDK types, for service properties. */
    public Map<String, Object> properties() {
        Map<String, Object> p = new LinkedHashMap<>();
        p.put(DEVICE, device);
        p.put(TESTS, tests);
        p.put(FAILURES, failures);
        p.put(BYTES_COPIED, bytesCopied);
        p.put(BYTES_FILLED, bytesFilled);
        p.put(BYTES_VERIFIED, bytesVerified);
        p.put(RING_IOVA, ringIova);
        p.put(TRANSFERS, transfers.stream().map(Transfer::describe).toArray(String[]::new));
        p.put(FAULT_CHECK, faultCheck.outcome().name());
        p.put(FAULT_IOVA, faultCheck.iova());
        p.put(FAULT_STATUS, Transfer.statusName(faultCheck.status()));
        p.put(FAULT_BYTES_CHANGED, faultCheck.bytesChanged());
        p.put(FAULT_DETAIL, faultCheck.detail());
        p.put(SUMMARY, summary());
        return p;
    }
}
