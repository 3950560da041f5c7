package dev.dmaplane.rdma.verbs;

import java.util.ArrayList;
import java.util.List;

/**
 * Memory access flags ({@code enum ib_access_flags} in {@code include/rdma/ib_verbs.h}, {@code IBV_ACCESS_*} in
 * libibverbs), as an int bit mask. Local read access is always granted.
 */
public final class Access {
    /** {@code IB_ACCESS_LOCAL_WRITE}: the HCA may write the memory for local work (receives, RDMA read results). */
    public static final int LOCAL_WRITE = 1;
    /** {@code IB_ACCESS_REMOTE_WRITE}. */
    public static final int REMOTE_WRITE = 1 << 1;
    /** {@code IB_ACCESS_REMOTE_READ}. */
    public static final int REMOTE_READ = 1 << 2;
    /** {@code IB_ACCESS_REMOTE_ATOMIC}. */
    public static final int REMOTE_ATOMIC = 1 << 3;
    /** {@code IB_ACCESS_MW_BIND}: memory windows may be bound to the region. */
    public static final int MW_BIND = 1 << 4;
    /** {@code IB_ZERO_BASED}: a window's addresses count from its start (type 2 windows only). */
    public static final int ZERO_BASED = 1 << 5;
    /** {@code IB_ACCESS_ON_DEMAND}: on-demand paging, no pinning. */
    public static final int ON_DEMAND = 1 << 6;
    /** {@code IB_ACCESS_HUGETLB}. */
    public static final int HUGETLB = 1 << 7;
    /** {@code IB_ACCESS_FLUSH_GLOBAL}. */
    public static final int FLUSH_GLOBAL = 1 << 8;
    /** {@code IB_ACCESS_FLUSH_PERSISTENT}. */
    public static final int FLUSH_PERSISTENT = 1 << 9;
    /** {@code IB_ACCESS_RELAXED_ORDERING}, the first optional flag ({@code IB_ACCESS_OPTIONAL}). */
    public static final int RELAXED_ORDERING = 1 << 20;

    /** The remote flags ({@code IB_ACCESS_REMOTE} in rxe). */
    public static final int REMOTE = REMOTE_READ | REMOTE_WRITE | REMOTE_ATOMIC;
    /** Every flag a memory registration may carry ({@code IB_ACCESS_SUPPORTED}). */
    public static final int SUPPORTED = (FLUSH_PERSISTENT << 1) - 1 | RELAXED_ORDERING;
    /** The flags a QP's {@code qp_access_flags} may carry. */
    public static final int QP_SUPPORTED = LOCAL_WRITE | REMOTE_WRITE | REMOTE_READ | REMOTE_ATOMIC;

    private Access() {
    }

    /**
     * {@code ib_access_writable}: whether memory with these flags can be written by the HCA: local or remote
     * write, remote atomics (which modify memory) and window binding (which can grant write access).
     */
    public static boolean writable(int access) {
        return (access & (LOCAL_WRITE | REMOTE_WRITE | REMOTE_ATOMIC | MW_BIND)) != 0;
    }

    /** The flags as {@code rdma res} prints them, e.g. {@code LOCAL_WRITE|REMOTE_READ}. */
    public static String toString(int access) {
        List<String> names = new ArrayList<>();
        String[] n = {"LOCAL_WRITE", "REMOTE_WRITE", "REMOTE_READ", "REMOTE_ATOMIC", "MW_BIND", "ZERO_BASED",
                "ON_DEMAND", "HUGETLB", "FLUSH_GLOBAL", "FLUSH_PERSISTENT"};
        for (int i = 0; i < n.length; i++) {
            if ((access & (1 << i)) != 0) {
                names.add(n[i]);
            }
        }
        if ((access & RELAXED_ORDERING) != 0) {
            names.add("RELAXED_ORDERING");
        }
        int unknown = access & ~SUPPORTED;
        if (unknown != 0) {
            names.add("0x" + Integer.toHexString(unknown));
        }
        return names.isEmpty() ? "0" : String.join("|", names);
    }
}
