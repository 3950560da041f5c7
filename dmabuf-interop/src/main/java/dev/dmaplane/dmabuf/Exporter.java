package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import org.osgi.annotation.versioning.ConsumerType;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * An exporter's operations ({@code struct dma_buf_ops}, {@code include/linux/dma-buf.h}). As in the kernel each
 * op is optional or required and is either set or not: {@link DmaBufs#export} refuses ops without {@code map},
 * {@code unmap} or {@code release}, and ops with only one of {@code pin}/{@code unpin} ({@code EINVAL} naming what
 * is missing). Having {@code pin}/{@code unpin} makes the exporter <em>dynamic</em>: it may move its backing while
 * no pin is held, telling dynamic importers first.
 * <p>
 * Locking, as the dma-buf locking convention says: {@code attach}, {@code detach}, {@code release},
 * {@code beginCpuAccess}, {@code endCpuAccess} run without the reservation lock (the op may take it);
 * {@code pin}, {@code unpin}, {@code map}, {@code unmap}, {@code cpuRead}, {@code cpuWrite} run with it held and
 * must not take it. {@code revokeMapping} runs from the exporter's own move or revoke path, without it.
 */
public final class Exporter {
    /** {@code map_dma_buf}: maps the backing for {@code attachment.device()}; may throw an errno. */
    @ConsumerType
    @FunctionalInterface
    public interface MapOp {
        MappedSg map(Attachment attachment, DmaDirection direction);
    }

    /** {@code unmap_dma_buf}: undoes one {@link MapOp} result, also one whose device access was revoked. */
    @ConsumerType
    @FunctionalInterface
    public interface UnmapOp {
        void unmap(Attachment attachment, MappedSg mapped, DmaDirection direction);
    }

    /** {@code release}: the last reference went; free the backing. Runs once. */
    @ConsumerType
    @FunctionalInterface
    public interface ReleaseOp {
        void release(DmaBuf dmabuf);
    }

    /** {@code attach} / {@code detach}; {@code attach} refuses a device by throwing its errno. */
    @ConsumerType
    @FunctionalInterface
    public interface AttachmentOp {
        void apply(DmaBuf dmabuf, Attachment attachment);
    }

    /** {@code pin} / {@code unpin}: keep the backing in place for an attachment. */
    @ConsumerType
    @FunctionalInterface
    public interface PinOp {
        void apply(Attachment attachment);
    }

    /** {@code begin_cpu_access} / {@code end_cpu_access}. */
    @ConsumerType
    @FunctionalInterface
    public interface CpuAccessOp {
        void apply(DmaBuf dmabuf, DmaDirection direction);
    }

    /** The vmap-like CPU view: copies between the backing at {@code offset} and {@code data}. */
    @ConsumerType
    @FunctionalInterface
    public interface CpuCopyOp {
        void copy(DmaBuf dmabuf, long offset, MemorySegment data);
    }

    /**
     * Cuts the importer device's access to a mapping of a backing that is going away, without ending the mapping
     * (the importer unmaps it later). Unset, the core uses {@link dev.dmaplane.dma.DmaApi#revokeSg} of the
     * attachment's device, which covers every mapping made with that device's {@code mapSg}.
     */
    @ConsumerType
    @FunctionalInterface
    public interface RevokeMappingOp {
        void revoke(Attachment attachment, MappedSg mapped, DmaDirection direction, String reason);
    }

    /**
     * The physical address list of the buffer for an importer that maps it into an IOMMU domain of its own (the
     * reservation lock held): the direction recent kernels take for revocable dma-bufs, where iommufd's
     * {@code IOMMU_IOAS_MAP_FILE} gets vfio-pci's BAR ranges through {@code vfio_pci_dma_buf_iommufd_map} (a
     * {@code struct dma_buf_phys_vec}) instead of an sg_table, and the interconnect negotiation series generalises
     * it as a "physical address" mapping type an exporter may offer. The exporter promises that a move or a revoke is
     * told to the importer's {@code move_notify} before the ranges stop holding the buffer, and that
     * {@code move_notify} means revoke: the importer unmaps its IOMMU mappings there and maps nothing again by
     * itself. Unset, the core answers {@code EOPNOTSUPP}, as the kernel does for every exporter but vfio-pci.
     */
    @ConsumerType
    @FunctionalInterface
    public interface PhysOp {
        List<PhysVec> phys(Attachment attachment);
    }

    private final MapOp map;
    private final UnmapOp unmap;
    private final ReleaseOp release;
    private final AttachmentOp attach;
    private final AttachmentOp detach;
    private final PinOp pin;
    private final PinOp unpin;
    private final CpuAccessOp beginCpuAccess;
    private final CpuAccessOp endCpuAccess;
    private final CpuCopyOp cpuRead;
    private final CpuCopyOp cpuWrite;
    private final RevokeMappingOp revokeMapping;
    private final PhysOp phys;

    private Exporter(Builder b) {
        this.map = b.map;
        this.unmap = b.unmap;
        this.release = b.release;
        this.attach = b.attach;
        this.detach = b.detach;
        this.pin = b.pin;
        this.unpin = b.unpin;
        this.beginCpuAccess = b.beginCpuAccess;
        this.endCpuAccess = b.endCpuAccess;
        this.cpuRead = b.cpuRead;
        this.cpuWrite = b.cpuWrite;
        this.revokeMapping = b.revokeMapping;
        this.phys = b.phys;
    }

    public static Builder builder() {
        return new Builder();
    }

    public MapOp map() {
        return map;
    }

    public UnmapOp unmap() {
        return unmap;
    }

    public ReleaseOp release() {
        return release;
    }

    public AttachmentOp attach() {
        return attach;
    }

    public AttachmentOp detach() {
        return detach;
    }

    public PinOp pin() {
        return pin;
    }

    public PinOp unpin() {
        return unpin;
    }

    public CpuAccessOp beginCpuAccess() {
        return beginCpuAccess;
    }

    public CpuAccessOp endCpuAccess() {
        return endCpuAccess;
    }

    public CpuCopyOp cpuRead() {
        return cpuRead;
    }

    public CpuCopyOp cpuWrite() {
        return cpuWrite;
    }

    public RevokeMappingOp revokeMapping() {
        return revokeMapping;
    }

    /** The physical address list op, or null for an exporter that gives none. */
    public PhysOp phys() {
        return phys;
    }

    /** {@code dma_buf_is_dynamic}: the exporter has pin/unpin. */
    public boolean isDynamic() {
        return pin != null;
    }

    /** What {@link DmaBufs#export} would refuse, one line each; empty when the ops are complete. */
    public List<String> problems() {
        List<String> p = new ArrayList<>();
        if (map == null) {
            p.add("map_dma_buf is missing");
        }
        if (unmap == null) {
            p.add("unmap_dma_buf is missing");
        }
        if (release == null) {
            p.add("release is missing");
        }
        if ((pin == null) != (unpin == null)) {
            p.add(pin == null ? "unpin is set without pin" : "pin is set without unpin");
        }
        return p;
    }

    /** Sets ops one by one; unset ones stay null as in a C initializer. */
    public static final class Builder {
        private MapOp map;
        private UnmapOp unmap;
        private ReleaseOp release;
        private AttachmentOp attach;
        private AttachmentOp detach;
        private PinOp pin;
        private PinOp unpin;
        private CpuAccessOp beginCpuAccess;
        private CpuAccessOp endCpuAccess;
        private CpuCopyOp cpuRead;
        private CpuCopyOp cpuWrite;
        private RevokeMappingOp revokeMapping;
        private PhysOp phys;

        private Builder() {
        }

        public Builder map(MapOp op) {
            this.map = op;
            return this;
        }

        public Builder unmap(UnmapOp op) {
            this.unmap = op;
            return this;
        }

        public Builder release(ReleaseOp op) {
            this.release = op;
            return this;
        }

        public Builder attach(AttachmentOp op) {
            this.attach = op;
            return this;
        }

        public Builder detach(AttachmentOp op) {
            this.detach = op;
            return this;
        }

        public Builder pin(PinOp op) {
            this.pin = op;
            return this;
        }

        public Builder unpin(PinOp op) {
            this.unpin = op;
            return this;
        }

        public Builder beginCpuAccess(CpuAccessOp op) {
            this.beginCpuAccess = op;
            return this;
        }

        public Builder endCpuAccess(CpuAccessOp op) {
            this.endCpuAccess = op;
            return this;
        }

        public Builder cpuRead(CpuCopyOp op) {
            this.cpuRead = op;
            return this;
        }

        public Builder cpuWrite(CpuCopyOp op) {
            this.cpuWrite = op;
            return this;
        }

        public Builder revokeMapping(RevokeMappingOp op) {
            this.revokeMapping = op;
            return this;
        }

        public Builder phys(PhysOp op) {
            this.phys = op;
            return this;
        }

        public Exporter build() {
            return new Exporter(this);
        }
    }
}
