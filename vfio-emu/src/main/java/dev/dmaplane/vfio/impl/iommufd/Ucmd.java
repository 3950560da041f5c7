package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

import static dev.dmaplane.vfio.VfioLayouts.U32;
import static dev.dmaplane.vfio.VfioLayouts.U64;
import static dev.dmaplane.vfio.VfioLayouts.offset;

/** A command's kernel copy ({@code struct iommufd_ucmd} of {@code drivers/iommu/iommufd/main.c}). */
record Ucmd(MemorySegment user, MemorySegment cmd, long userSize) {
    /** {@code iommufd_ucmd_respond}: the structure back, up to the user's size. */
    void respond() {
        MemorySegment.copy(cmd, 0, user, 0, Math.min(userSize, cmd.byteSize()));
    }

    int u32(StructLayout s, String name) {
        return cmd.get(U32, offset(s, name));
    }

    long u64(StructLayout s, String name) {
        return cmd.get(U64, offset(s, name));
    }

    void setU32(StructLayout s, String name, int v) {
        cmd.set(U32, offset(s, name), v);
    }

    void setU64(StructLayout s, String name, long v) {
        cmd.set(U64, offset(s, name), v);
    }

    /** {@code EOPNOTSUPP} for a non-zero {@code __reserved} field of {@code s}. */
    void reserved0(StructLayout s, String what) {
        if (u32(s, "__reserved") != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, what + ": __reserved is " + u32(s, "__reserved"));
        }
    }
}
