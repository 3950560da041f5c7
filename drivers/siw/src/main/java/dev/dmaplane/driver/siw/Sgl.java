package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.errno.Errno;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.LongConsumer;
import java.util.function.LongSupplier;

/**
 * A piece of a scatter/gather list reached through the core's lkey checks ({@code siw_check_sge},
 * {@code siw_check_sgl_tx} in {@code siw_mem.c}): bytes {@code [offset, offset + n)} of the list read or written
 * one SGE piece at a time, through the leases of the message's SGEs ({@link SgeLeases}): a send's whole SGEs held
 * for the engine's pass, a receive's SGEs as far as the message's buffered bytes reach, held for the message.
 */
final class Sgl {
    private Sgl() {
    }

    /** Total bytes of {@code sges}. */
    static long length(List<Sge> sges) {
        long n = 0;
        for (Sge s : sges) {
            n += s.length();
        }
        return n;
    }

    /**
     * Reads {@code dst.byteSize()} bytes of the list from {@code offset} through {@code leases}, which keep a whole
     * SGE's stable lease for the rest of the engine's pass (the send side, one lease per SGE and request).
     *
     * @throws AccessFault {@code LOC_PROT_ERR} for a refused lkey or a list too short
     */
    static void read(MemoryAccess mem, HwQp qp, List<Sge> sges, long offset, MemorySegment dst, SgeLeases leases) {
        walk(sges, offset, dst.byteSize(), WcStatus.LOC_PROT_ERR, (i, s, skip, n, done) -> {
            DmaLease l = leases.take(i, () -> mem.local(qp.pd(), s.lkey(), s.addr(), s.length(), 0));
            if (l == null) {
                try (DmaLease piece = mem.local(qp.pd(), s.lkey(), s.addr() + skip, n, 0)) {
                    piece.read(0, dst.asSlice(done, n));
                }
                return;
            }
            try {
                l.read(skip, dst.asSlice(done, n));
            } finally {
                if (!leases.held(i)) {
                    l.close();
                }
            }
        });
    }

    /**
     * Writes {@code src} into the list from {@code offset} (a receive's buffers) through {@code leases}, which keep
     * for the rest of the message a lease of the part of each SGE that the message's bytes up to list offset
     * {@code upTo} fill (those read off the stream so far; asked only when a lease is taken). Each SGE's piece, once
     * written, is counted to {@code placed}, so that a refusal further on leaves the bytes placed before it known
     * ({@code siw_proc_send} adds them to {@code wqe->processed} when it stops).
     *
     * @throws AccessFault {@code LOC_PROT_ERR} for a refused lkey, {@code LOC_LEN_ERR} when the list is too short
     */
    static void write(MemoryAccess mem, HwQp qp, List<Sge> sges, long offset, MemorySegment src, SgeLeases leases,
                      LongSupplier upTo, LongConsumer placed) {
        walk(sges, offset, src.byteSize(), WcStatus.LOC_LEN_ERR, (i, s, skip, n, done) -> {
            LongSupplier ahead = () -> Math.min(s.length() - skip, upTo.getAsLong() - (offset + done));
            leases.write(i, s.lkey(), skip, ahead, src.asSlice(done, n),
                    len -> mem.local(qp.pd(), s.lkey(), s.addr() + skip, len, Access.LOCAL_WRITE));
            placed.accept(n);
        });
    }

    /** One piece of a walk: {@code n} bytes from byte {@code skip} of SGE {@code i}, byte {@code done} of the data. */
    @FunctionalInterface
    private interface Piece {
        void move(int i, Sge s, long skip, long n, long done);
    }

    /**
     * Hands {@code piece} the pieces of bytes {@code [offset, offset + need)} of the list, in order.
     *
     * @throws AccessFault {@code tooShort} when the list ends before {@code need} bytes
     */
    private static void walk(List<Sge> sges, long offset, long need, WcStatus tooShort, Piece piece) {
        long done = 0;
        long skip = offset;
        int i = -1;
        for (Sge s : sges) {
            i++;
            if (done == need) {
                return;
            }
            if (skip >= s.length()) {
                skip -= s.length();
                continue;
            }
            long n = Math.min(s.length() - skip, need - done);
            piece.move(i, s, skip, n, done);
            done += n;
            skip = 0;
        }
        if (done < need) {
            throw new AccessFault(tooShort, Errno.EINVAL, "siw: " + need + " bytes at offset " + offset
                    + " exceed the SGL of " + length(sges) + " bytes");
        }
    }
}
