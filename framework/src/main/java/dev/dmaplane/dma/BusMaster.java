package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;

/**
 * The device side of DMA: memory reads and writes a device issues with its requester ID, translated by its
 * IOMMU domain (or taken as physical addresses when it has none). An access to an address the domain does not
 * map, or a write to a read-only mapping, is refused as the IOMMU would: the access fails with
 * {@link DmaFaultException} and a fault is recorded; no byte is transferred.
 */
@ProviderType
public interface BusMaster {
    /** Device reads {@code dst.byteSize()} bytes at bus address {@code busAddr} into {@code dst}. */
    void read(long busAddr, MemorySegment dst);

    /** Device writes all of {@code src} to bus address {@code busAddr}. */
    void write(long busAddr, MemorySegment src);

    /**
     * Makes every check a {@link #read} ({@code write} false) or {@link #write} of {@code length} bytes at
     * {@code busAddr} would make, moving no byte: the PCIe ATS Translation Request a device sends before it commits
     * to a transfer, so that one refused page refuses all of it before any byte lands. A refusal is the one the
     * transfer would get, recorded as the transfer's would be.
     *
     * @throws ErrnoException {@code EINVAL} for a negative length
     */
    void probe(long busAddr, long length, boolean write);

    /**
     * A cut-through transfer between two bus masters of one machine: this device reads {@code length} bytes at
     * {@code busAddr} and {@code target} writes them at {@code targetBusAddr}, each side translated and checked as
     * its own {@link #read}/{@link #write} transactions would be, with no staging buffer between them where both
     * ends are RAM (what a loopback or in-process fabric does with a packet whose payload the sending device
     * fetches while the receiving one stores it). Refusals are those of {@link #read} and {@link #write}: bytes of
     * earlier transactions may have moved, none of the refused one.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a negative length
     */
    default void copyTo(long busAddr, BusMaster target, long targetBusAddr, long length) {
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, "negative length " + length);
        }
        MemorySegment buf = MemorySegment.ofArray(new byte[(int) Math.min(length, 64 * 1024)]);
        for (long done = 0; done < length; ) {
            long n = Math.min(buf.byteSize(), length - done);
            MemorySegment chunk = buf.asSlice(0, n);
            read(busAddr + done, chunk);
            target.write(targetBusAddr + done, chunk);
            done += n;
        }
    }

    /**
     * A chain of cut-through transfers between the same two bus masters, as a DMA engine runs a scatter-gather
     * descriptor list: descriptor {@code i} copies {@code lengths[i]} bytes from {@code busAddr + offsets[i]} to
     * {@code targetBusAddr + targetOffsets[i]} of {@code target}, checked as {@link #copyTo(long, BusMaster, long, long)}
     * checks one transfer. Runs descriptors {@code from} up to (not including) {@code to} in order and returns how
     * many it ran, at least one; it may stop early, and the caller calls again from where it stopped. Only the first
     * descriptor of a call is ever refused: a caller that catches a refusal knows that every descriptor before
     * {@code from} moved and none after it did.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} when {@code [from, to)} is empty or outside an array
     */
    default int copyTo(long busAddr, BusMaster target, long targetBusAddr, long[] offsets, long[] targetOffsets,
                       int[] lengths, int from, int to) {
        checkChain(offsets, targetOffsets, lengths, from, to);
        copyTo(busAddr + offsets[from], target, targetBusAddr + targetOffsets[from], lengths[from]);
        return 1;
    }

    /** The argument checks of the chain {@link #copyTo(long, BusMaster, long, long[], long[], int[], int, int)}. */
    static void checkChain(long[] offsets, long[] targetOffsets, int[] lengths, int from, int to) {
        if (offsets == null || targetOffsets == null || lengths == null) {
            throw new ErrnoException(Errno.EINVAL, "a chain needs offsets,"
                    + " target offsets and lengths (got " + (offsets == null ? "no offsets" : targetOffsets == null
                    ? "no target offsets" : "no lengths") + ")");
        }
        int n = Math.min(lengths.length, Math.min(offsets.length, targetOffsets.length));
        if (from < 0 || from >= to || to > n) {
            throw new ErrnoException(Errno.EINVAL, "descriptors [" + from + ", "
                    + to + ") of a chain of " + n);
        }
    }

    /** Device reads the 8-byte little-endian value at {@code busAddr}. */
    long readLong(long busAddr);

    /** Device writes an 8-byte little-endian value at {@code busAddr}. */
    void writeLong(long busAddr, long value);

    /**
     * PCIe AtomicOp CAS on an 8-byte aligned address: returns the old value, stores {@code swap} if it equaled
     * {@code compare}. Needs read and write permission.
     */
    long compareAndSwap(long busAddr, long compare, long swap);

    /** PCIe AtomicOp FetchAdd on an 8-byte aligned address: returns the old value. */
    long fetchAndAdd(long busAddr, long add);
}
