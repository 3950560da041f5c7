package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/**
 * A scatter-gather table ({@code struct sg_table}) on the CPU side: physically contiguous runs of host memory,
 * built from pages with neighbouring frames merged ({@code sg_alloc_table_from_pages}).
 */
public record SgTable(List<SgEntry> entries) {
    public SgTable {
        if (entries == null || entries.isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "an sg table needs at least one entry");
        }
        entries = List.copyOf(entries);
    }

    /** Total bytes described. */
    public long length() {
        long n = 0;
        for (SgEntry e : entries) {
            n += e.length();
        }
        return n;
    }

    /**
     * Builds a table from page-sized frames, merging physically adjacent ones ({@code sg_alloc_table_from_pages}).
     *
     * @param physAddrs physical address of each page, in order
     * @param pageSize  the page size (a power of two)
     * @param offset    offset of the data into the first page
     * @param length    bytes of data
     */
    public static SgTable fromPages(long[] physAddrs, long pageSize, long offset, long length) {
        if (physAddrs == null || physAddrs.length == 0) {
            throw new ErrnoException(Errno.EINVAL, "no pages to build an sg table from");
        }
        if (pageSize <= 0 || Long.bitCount(pageSize) != 1) {
            throw new ErrnoException(Errno.EINVAL, "page size must be a power of two, not " + pageSize);
        }
        if (offset < 0 || offset >= pageSize) {
            throw new ErrnoException(Errno.EINVAL, "offset " + offset + " is not inside the first page");
        }
        if (length <= 0 || offset + length > physAddrs.length * pageSize) {
            throw new ErrnoException(Errno.EINVAL, "length " + length + " at offset " + offset
                    + " does not fit " + physAddrs.length + " pages");
        }
        SgAppendTable<SgEntry> runs = SgAppendTable.sgEntries();
        long remaining = length;
        long first = Math.min(pageSize - offset, remaining);
        runs.append(physAddrs[0] + offset, first);
        remaining -= first;
        for (int i = 1; remaining > 0; i++) {
            long chunk = Math.min(pageSize, remaining);
            runs.append(physAddrs[i], chunk);
            remaining -= chunk;
        }
        return new SgTable(runs.toList());
    }
}
