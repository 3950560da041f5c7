package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.vfio.nvme.NvmeStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * The data pointer of a command as a scatter/gather list (NVM Express Base Specification 2.0, 4.1.1 Physical
 * Region Page Entry and List; QEMU's {@code nvme_map_prp}, the host side in {@code nvme_pci_setup_prps}): PRP1
 * with an offset into the first memory page, then PRP2 as the second page or as a pointer to a PRP list whose last
 * entry chains to the next list while more than one page remains. One instance per command engine, reused from
 * command to command: its span arrays and list buffer only grow, so walking a command allocates nothing once they
 * are as large as the engine's largest transfer. Bytes then move between the spans and the controller over its
 * {@link DeviceBus}, addressed by their offset in the transfer.
 */
final class Prp {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final DeviceBus bus;
    private long[] addrs = new long[4];
    private long[] lengths = new long[4];
    private int count;
    /** Where a PRP list page is fetched to. */
    private MemorySegment list = MemorySegment.ofArray(new long[0]);
    /** The span {@link #locate} found last and its offset in the transfer: pieces come in order. */
    private int cursor;
    private long cursorAt;

    Prp(DeviceBus bus) {
        this.bus = bus;
    }

    /** Spans the last successful walk found (adjacent pages merged). */
    int spans() {
        return count;
    }

    long addr(int i) {
        return addrs[i];
    }

    long length(int i) {
        return lengths[i];
    }

    /**
     * Walks {@code length} bytes (positive) described by {@code prp1} and {@code prp2} with memory pages of
     * {@code pageSize} bytes, fetching PRP lists over the bus. Invalid PRP Offset for a PRP1 that is not dword
     * aligned, a first list pointer that is not qword aligned, a chained list pointer that is not page aligned (as
     * QEMU's {@code nvme_map_prp} requires: each chained list then brings a page of entries, so a walk always ends)
     * or any later entry with an offset; Data Transfer Error when a list cannot be fetched or an entry would wrap
     * the address space.
     *
     * @return the status: success, and the spans are this object's until the next walk
     */
    int walk(long prp1, long prp2, long length, long pageSize) {
        count = 0;
        cursor = 0;
        cursorAt = 0;
        if ((prp1 & 3) != 0) {
            return NvmeStatus.INVALID_PRP_OFFSET;
        }
        long first = Math.min(length, pageSize - (prp1 & (pageSize - 1)));
        if (!add(prp1, first)) {
            return NvmeStatus.DATA_TRANSFER_ERROR;
        }
        long remaining = length - first;
        if (remaining == 0) {
            return NvmeStatus.SUCCESS;
        }
        if (remaining <= pageSize) {
            if ((prp2 & (pageSize - 1)) != 0) {
                return NvmeStatus.INVALID_PRP_OFFSET;
            }
            return add(prp2, remaining) ? NvmeStatus.SUCCESS : NvmeStatus.DATA_TRANSFER_ERROR;
        }
        long next = prp2;
        while (remaining > 0) {
            if ((next & 7) != 0) {
                return NvmeStatus.INVALID_PRP_OFFSET;
            }
            long inPage = (pageSize - (next & (pageSize - 1))) / 8;
            long pages = (remaining + pageSize - 1) / pageSize;
            long fetch = Math.min(inPage, pages);
            MemorySegment entries = listBuffer(fetch);
            if (!bus.read(next, entries).ok()) {
                return NvmeStatus.DATA_TRANSFER_ERROR;
            }
            for (int i = 0; i < fetch; i++) {
                long e = entries.getAtIndex(U64, i);
                if (i == inPage - 1 && remaining > pageSize) {
                    if ((e & (pageSize - 1)) != 0) {
                        return NvmeStatus.INVALID_PRP_OFFSET;
                    }
                    next = e; // the last entry of a full list page points at the next list, a whole page
                    break;
                }
                if ((e & (pageSize - 1)) != 0) {
                    return NvmeStatus.INVALID_PRP_OFFSET;
                }
                long n = Math.min(pageSize, remaining);
                if (!add(e, n)) {
                    return NvmeStatus.DATA_TRANSFER_ERROR;
                }
                remaining -= n;
            }
        }
        return NvmeStatus.SUCCESS;
    }

    /** The first {@code entries} qwords of the list buffer, grown when a list brings more. */
    private MemorySegment listBuffer(long entries) {
        if (list.byteSize() < entries * 8) {
            list = MemorySegment.ofArray(new long[Math.toIntExact(entries)]);
        }
        return list.byteSize() == entries * 8 ? list : list.asSlice(0, entries * 8);
    }

    private boolean add(long addr, long length) {
        if (Long.compareUnsigned(addr + length - 1, addr) < 0) {
            return false;
        }
        if (count > 0 && addr != 0 && addrs[count - 1] + lengths[count - 1] == addr) { // never merged across 2^64
            lengths[count - 1] += length;
            return true;
        }
        if (count == addrs.length) {
            addrs = Arrays.copyOf(addrs, count * 2);
            lengths = Arrays.copyOf(lengths, count * 2);
        }
        addrs[count] = addr;
        lengths[count] = length;
        count++;
        return true;
    }

    /**
     * Moves {@code buf} between the controller and the transfer's bytes from offset {@code at}: the device writes it
     * to host memory when {@code toHost}, else reads host memory into it. It stops at the first refused span.
     */
    DmaStatus move(long at, MemorySegment buf, boolean toHost) {
        long done = 0;
        long len = buf.byteSize();
        int i = locate(at);
        long spanAt = cursorAt;
        while (done < len) {
            long off = at + done - spanAt;
            long n = Math.min(lengths[i] - off, len - done);
            MemorySegment part = n == len ? buf : buf.asSlice(done, n);
            DmaStatus st = toHost ? bus.write(addrs[i] + off, part) : bus.read(addrs[i] + off, part);
            if (st instanceof DmaStatus.Fault f) {
                return new DmaStatus.Fault(f.busAddr(), done + f.moved(), f.errno(), f.reason());
            }
            done += n;
            if (done < len) {
                spanAt += lengths[i];
                i++;
            }
        }
        return new DmaStatus.Done(len);
    }

    /** The span holding transfer offset {@code at}, from the cursor on when the pieces come in order. */
    private int locate(long at) {
        if (at < cursorAt) {
            cursor = 0;
            cursorAt = 0;
        }
        while (cursorAt + lengths[cursor] <= at) {
            cursorAt += lengths[cursor];
            cursor++;
        }
        return cursor;
    }

    /**
     * Asks the bus whether every span may be read by the device ({@code toHost} false) or written, moving nothing
     * ({@link DeviceBus#probe}): the first refusal, or success.
     */
    DmaStatus probe(boolean toHost) {
        for (int i = 0; i < count; i++) {
            DmaStatus st = bus.probe(addrs[i], lengths[i], toHost);
            if (!st.ok()) {
                return st;
            }
        }
        return new DmaStatus.Done(0);
    }
}
