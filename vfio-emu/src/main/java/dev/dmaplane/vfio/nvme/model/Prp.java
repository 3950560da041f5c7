package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DmaSpan;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The data pointer of a command as a scatter/gather list (NVM Express Base Specification 2.0, 4.1.1 Physical
 * Region Page Entry and List; QEMU's {@code nvme_map_prp}, the host side in {@code nvme_pci_setup_prps}): PRP1
 * with an offset into the first memory page, then PRP2 as the second page or as a pointer to a PRP list whose last
 * entry chains to the next list while more than one page remains.
 */
final class Prp {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The spans of a transfer, or the status that refused it. */
    record Walk(List<DmaSpan> spans, int status) {
        static Walk failed(int status) {
            return new Walk(List.of(), status);
        }

        boolean ok() {
            return status == NvmeStatus.SUCCESS;
        }
    }

    private Prp() {
    }

    /**
     * Walks {@code length} bytes (positive) described by {@code prp1} and {@code prp2} with memory pages of
     * {@code pageSize} bytes, fetching PRP lists over {@code dma}. Invalid PRP Offset for a PRP1 that is not dword
     * aligned, a first list pointer that is not qword aligned, a chained list pointer that is not page aligned (as
     * QEMU's {@code nvme_map_prp} requires: each chained list then brings a page of entries, so a walk always ends)
     * or any later entry with an offset; Data Transfer Error when a list cannot be fetched or an entry would wrap
     * the address space.
     */
    static Walk walk(DeviceBus dma, long prp1, long prp2, long length, long pageSize) {
        if ((prp1 & 3) != 0) {
            return Walk.failed(NvmeStatus.INVALID_PRP_OFFSET);
        }
        List<DmaSpan> spans = new ArrayList<>();
        long first = Math.min(length, pageSize - (prp1 & (pageSize - 1)));
        if (!add(spans, prp1, first)) {
            return Walk.failed(NvmeStatus.DATA_TRANSFER_ERROR);
        }
        long remaining = length - first;
        if (remaining == 0) {
            return new Walk(spans, NvmeStatus.SUCCESS);
        }
        if (remaining <= pageSize) {
            if ((prp2 & (pageSize - 1)) != 0) {
                return Walk.failed(NvmeStatus.INVALID_PRP_OFFSET);
            }
            return add(spans, prp2, remaining) ? new Walk(spans, NvmeStatus.SUCCESS)
                    : Walk.failed(NvmeStatus.DATA_TRANSFER_ERROR);
        }
        long list = prp2;
        while (remaining > 0) {
            if ((list & 7) != 0) {
                return Walk.failed(NvmeStatus.INVALID_PRP_OFFSET);
            }
            long inPage = (pageSize - (list & (pageSize - 1))) / 8;
            long pages = (remaining + pageSize - 1) / pageSize;
            long fetch = Math.min(inPage, pages);
            MemorySegment entries = MemorySegment.ofArray(new long[(int) fetch]);
            if (!dma.read(list, entries).ok()) {
                return Walk.failed(NvmeStatus.DATA_TRANSFER_ERROR);
            }
            for (int i = 0; i < fetch; i++) {
                long e = entries.getAtIndex(U64, i);
                if (i == inPage - 1 && remaining > pageSize) {
                    if ((e & (pageSize - 1)) != 0) {
                        return Walk.failed(NvmeStatus.INVALID_PRP_OFFSET);
                    }
                    list = e; // the last entry of a full list page points at the next list, a whole page
                    break;
                }
                if ((e & (pageSize - 1)) != 0) {
                    return Walk.failed(NvmeStatus.INVALID_PRP_OFFSET);
                }
                long n = Math.min(pageSize, remaining);
                if (!add(spans, e, n)) {
                    return Walk.failed(NvmeStatus.DATA_TRANSFER_ERROR);
                }
                remaining -= n;
            }
        }
        return new Walk(spans, NvmeStatus.SUCCESS);
    }

    private static boolean add(List<DmaSpan> spans, long addr, long length) {
        if (Long.compareUnsigned(addr + length - 1, addr) < 0) {
            return false;
        }
        if (!spans.isEmpty()) {
            DmaSpan last = spans.getLast();
            if (last.busAddr() + last.length() == addr) {
                spans.set(spans.size() - 1, new DmaSpan(last.busAddr(), last.length() + length));
                return true;
            }
        }
        spans.add(new DmaSpan(addr, length));
        return true;
    }
}
