package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.HwMr;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The regions registered on one siw device by their STag's index ({@code sdev->mem_xa}) and the checks
 * {@code siw_mem.c} makes of an STag: whether it names a region ({@code siw_mem_id2obj} and the key compared), and
 * why an access through it was refused, as the TERMINATE codes {@code siw_tagged_error}, {@code siw_rdmap_error} and
 * {@code siw_invalidate_stag} give them.
 */
final class SiwRegions {
    /** By the index of the STag (the key's upper 24 bits), which a re-registration keeps. */
    private final Map<Integer, HwMr> mrs = new ConcurrentHashMap<>();

    void add(HwMr mr) {
        mrs.put(mr.rkey() >>> 8, mr);
    }

    void remove(HwMr mr) {
        mrs.remove(mr.rkey() >>> 8, mr);
    }

    /**
     * The region {@code stag} names, index and key ({@code siw_mem_id2obj}, then the comparison of {@code mem->stag}
     * that {@code siw_check_sge} and {@code siw_proc_write} make), or null.
     */
    HwMr region(int stag) {
        HwMr m = mrs.get(stag >>> 8);
        return m != null && m.rkey() == stag ? m : null;
    }

    /**
     * Whether {@code stag} names a registered region ({@code siw_mem_id2obj} finds its index and the key matches):
     * a tagged segment into one that does not is refused without an async event ({@code siw_proc_write}).
     */
    boolean hasRegion(int stag) {
        return region(stag) != null;
    }

    /** Whether {@code stag} names a region whose STag was invalidated ({@code stag_valid} 0, not deregistered). */
    boolean invalidated(int stag) {
        HwMr m = region(stag);
        return m != null && !m.isStagValid();
    }

    /** Whether {@code [to, to + n)} lies inside the region, compared unsigned ({@code mr_check_range}). */
    private static boolean inside(HwMr m, long to, long n) {
        return Long.compareUnsigned(to, m.iova()) >= 0
                && Long.compareUnsigned(to - m.iova(), m.length()) <= 0
                && Long.compareUnsigned(n, m.length() - (to - m.iova())) <= 0;
    }

    /**
     * {@code siw_tagged_error}: why a tagged placement into {@code stag} was refused, as a DDP code, in the order of
     * {@code siw_check_mem}: an invalid STag (an invalidated one too) before the PD, the bounds and the rights.
     */
    int taggedError(SiwQp q, int stag, long to, long n) {
        HwMr m = region(stag);
        if (m == null || !m.isStagValid()) {
            return Terminate.DDP_T_INVALID_STAG;
        }
        if (m.pd() != q.hw.pd()) {
            return Terminate.DDP_T_STAG_NOT_ASSOC;
        }
        if (!inside(m, to, n)) {
            return Terminate.DDP_T_BASE_BOUNDS;
        }
        // RFC 5041 has no code for missing access rights: siw answers Invalid STag
        return Terminate.DDP_T_INVALID_STAG;
    }

    /** {@code siw_rdmap_error}: why an access of a READ source was refused, as an RDMAP code, in the same order. */
    int rdmapError(SiwQp q, int stag, long to, long n, int access) {
        HwMr m = region(stag);
        if (m == null || !m.isStagValid()) {
            return Terminate.RDMAP_INVALID_STAG;
        }
        if (m.pd() != q.hw.pd()) {
            return Terminate.RDMAP_STAG_NOT_ASSOC;
        }
        if (!inside(m, to, n)) {
            return Terminate.RDMAP_BASE_BOUNDS;
        }
        if ((m.access() & access) == 0 || (q.hw.attr().qpAccessFlags() & access) == 0) {
            return Terminate.RDMAP_ACCESS_RIGHTS;
        }
        return Terminate.RDMAP_INVALID_STAG;
    }

    /**
     * {@code siw_invalidate_stag} refusing the STag a SEND with Invalidate names, as a TERMINATE error type: Remote
     * Protection Error when a region of another PD holds its index ({@code -EACCES}), else Remote Operation Error
     * ({@code -EINVAL}, as for an index no region holds). siw looks the STag up by its index alone, so a region of
     * the QP's PD is never refused (the core invalidates it: {@link SiwProvider#invalidatesRegions()}).
     */
    int invalidateErrorType(SiwQp q, int stag) {
        HwMr m = mrs.get(stag >>> 8);
        return m != null && m.pd() != q.hw.pd() ? Terminate.RDMAP_REMOTE_PROTECTION : Terminate.RDMAP_REMOTE_OPERATION;
    }
}
