package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmaengine.DmaResult;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.driver.dmatest.FaultCheck;
import dev.dmaplane.driver.dmatest.Transfer;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import java.util.Random;

/**
 * The test proper, as one {@code dmatest_func} thread runs it over a channel ({@code drivers/dma/dmatest.c}):
 * random copies between a source and a destination buffer, each byte of both checked afterwards against dmatest's
 * patterns; one fill; the use-after-unmap check ({@link FaultCheck}); and one more copy after the fault, which the
 * channel's driver recovered from. Each transfer
 * streaming-maps exactly the areas it touches ({@code dma_map_single}: source {@code TO_DEVICE}, destination
 * {@code FROM_DEVICE}), syncs the destination for the CPU and unmaps both before the CPU looks, so nothing stays
 * mapped between transfers.
 */
final class SelfTest {
    private static final Logger LOG = LoggerFactory.getLogger(SelfTest.class);
    /** What dmatest fills with: a byte no pattern byte equals in the destination area. */
    static final byte FILL_BYTE = (byte) 0xA5;
    private static final int OK = DmaResult.NOERROR.ordinal();

    /** The IOMMU as the fault check needs to see it. */
    interface IommuWatch {
        /** Whether the device's DMA goes through a translating (paging) domain. */
        boolean translated();

        /** The IOVA of the IOMMU's last recorded write fault of the device since {@code sinceNanos}, if any. */
        OptionalLong lastWriteFault(long sinceNanos);
    }

    private final String device;
    private final DmaApi dma;
    private final ChannelClient channel;
    private final HostBuffer src;
    private final HostBuffer dst;
    private final Parameters params;
    private final IommuWatch iommu;
    private final List<Transfer> transfers = new ArrayList<>();
    private int failures;
    private long copied;
    private long filled;
    private long verified;

    SelfTest(String device, DmaApi dma, ChannelClient channel, HostBuffer src, HostBuffer dst, Parameters params,
             IommuWatch iommu) {
        this.device = device;
        this.dma = dma;
        this.channel = channel;
        this.src = src;
        this.dst = dst;
        this.params = params;
        this.iommu = iommu;
    }

    /** Runs every step; a failing transfer is counted and reported, and the next one still runs. */
    DmaTestResult run() {
        long size = params.bufferSize();
        Random rnd = new Random(params.seed());
        for (int i = 0; i < params.copies(); i++) {
            long len = 1 + rnd.nextLong(size);
            count(copy("copy", rnd.nextLong(size - len + 1), rnd.nextLong(size - len + 1), len));
        }
        long fillLen = 1 + rnd.nextLong(size);
        count(fill(rnd.nextLong(size - fillLen + 1), fillLen));
        FaultCheck check = staleIova(size / 4);
        long len = 1 + rnd.nextLong(size);
        count(copy("copy after the fault", rnd.nextLong(size - len + 1), rnd.nextLong(size - len + 1), len));
        int tests = transfers.size() - (check.outcome() == FaultCheck.Outcome.SKIPPED ? 0 : 1);
        return new DmaTestResult(device, tests, failures, copied, filled, verified, -1, transfers, check);
    }

    private void count(Transfer t) {
        if (!t.ok()) {
            failures++;
            LOG.warn("dmatest {}: {}", device, t.describe());
        } else {
            LOG.debug("dmatest {}: {}", device, t.describe());
        }
    }

    /** One copy of {@code len} bytes from source offset {@code srcOff} to destination offset {@code dstOff}. */
    private Transfer copy(String operation, long srcOff, long dstOff, long len) {
        int n = transfers.size();
        Patterns.fill(src.cpu(), srcOff, len, true);
        Patterns.fill(dst.cpu(), dstOff, len, false);
        long srcIova = -1;
        long dstIova = -1;
        int status = -1;
        String error = "";
        try {
            srcIova = dma.mapSingle(src.phys() + srcOff, len, DmaDirection.TO_DEVICE);
            try {
                dstIova = dma.mapSingle(dst.phys() + dstOff, len, DmaDirection.FROM_DEVICE);
                try {
                    status = channel.memcpy(dstIova, srcIova, len).ordinal();
                    dma.syncSingleForCpu(dstIova, len, DmaDirection.FROM_DEVICE);
                } finally {
                    dma.unmapSingle(dstIova, len, DmaDirection.FROM_DEVICE);
                }
            } finally {
                dma.unmapSingle(srcIova, len, DmaDirection.TO_DEVICE);
            }
        } catch (ErrnoException e) {
            error = e.getMessage();
        }
        long wrong = Patterns.verify(src.cpu(), srcOff, len, true);
        verified += src.size();
        if (status == OK) {
            wrong += Patterns.verifyDestination(dst.cpu(), srcOff, dstOff, len);
            verified += dst.size();
            copied += len;
        }
        return record(new Transfer(n, operation, srcIova, dstIova, len, status, wrong, error));
    }

    /** One fill of {@code len} bytes at destination offset {@code off} with {@link #FILL_BYTE}. */
    private Transfer fill(long off, long len) {
        int n = transfers.size();
        Patterns.fill(dst.cpu(), off, len, false);
        long dstIova = -1;
        int status = -1;
        String error = "";
        try {
            dstIova = dma.mapSingle(dst.phys() + off, len, DmaDirection.FROM_DEVICE);
            try {
                status = channel.memset(dstIova, FILL_BYTE & 0xff, len).ordinal();
                dma.syncSingleForCpu(dstIova, len, DmaDirection.FROM_DEVICE);
            } finally {
                dma.unmapSingle(dstIova, len, DmaDirection.FROM_DEVICE);
            }
        } catch (ErrnoException e) {
            error = e.getMessage();
        }
        long wrong = 0;
        if (status == OK) {
            wrong = Patterns.verifyFill(dst.cpu(), off, len, FILL_BYTE);
            verified += dst.size();
            filled += len;
        }
        return record(new Transfer(n, "fill", FILL_BYTE & 0xff, dstIova, len, status, wrong, error));
    }

    /**
     * The use-after-unmap: the destination is mapped, unmapped, and its stale IOVA handed to the channel anyway.
     * Only where the IOMMU translates: without it the stale address is a physical one and the write would land,
     * as it would on real hardware. The channel's driver recovers its engine from the fault by itself.
     */
    private FaultCheck staleIova(long len) {
        if (!iommu.translated()) {
            String why = "the device's DMA is not translated (IOMMU off or identity domain): a stale address would reach memory";
            LOG.info("dmatest {}: fault check skipped: {}", device, why);
            return FaultCheck.skipped(why);
        }
        int n = transfers.size();
        Patterns.fill(src.cpu(), 0, len, true);
        Patterns.fill(dst.cpu(), 0, len, false);
        byte[] before = dst.cpu().toArray(ValueLayout.JAVA_BYTE);
        long since = System.nanoTime();
        long srcIova = -1;
        long stale = -1;
        int status = -1;
        String error = "";
        try {
            srcIova = dma.mapSingle(src.phys(), len, DmaDirection.TO_DEVICE);
            try {
                stale = dma.mapSingle(dst.phys(), len, DmaDirection.FROM_DEVICE);
                dma.unmapSingle(stale, len, DmaDirection.FROM_DEVICE); // the bug: the descriptor below still names it
                status = channel.memcpy(stale, srcIova, len).ordinal();
            } finally {
                dma.unmapSingle(srcIova, len, DmaDirection.TO_DEVICE);
            }
        } catch (ErrnoException e) {
            error = e.getMessage();
        }
        long changed = Patterns.changed(before, dst.cpu());
        verified += dst.size();
        long faultAddr = stale >= 0 ? iommu.lastWriteFault(since).orElse(-1) : -1;
        boolean recorded = stale >= 0 && faultAddr == stale;
        record(new Transfer(n, "copy to stale IOVA", srcIova, stale, len, status, changed, error));
        boolean passed = status == DmaResult.WRITE_FAILED.ordinal() && recorded && changed == 0;
        String detail = String.format("channel %s ended it %s at iova 0x%x, IOMMU write fault %s (last at 0x%x), %d bytes "
                        + "of the unmapped page changed", channel.name(), Transfer.statusName(status), stale,
                recorded ? "recorded" : "NOT recorded", faultAddr, changed);
        if (passed) {
            LOG.info("dmatest {}: fault check passed: {}", device, detail);
        } else {
            LOG.warn("dmatest {}: fault check FAILED: {}{}", device, detail, error.isEmpty() ? "" : "; " + error);
        }
        return new FaultCheck(passed ? FaultCheck.Outcome.PASSED : FaultCheck.Outcome.FAILED, stale, status, faultAddr,
                recorded, changed, detail);
    }

    private Transfer record(Transfer t) {
        transfers.add(t);
        return t;
    }
}
