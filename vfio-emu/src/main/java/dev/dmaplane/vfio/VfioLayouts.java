package dev.dmaplane.vfio;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The structures of {@code include/uapi/linux/vfio.h} as memory layouts (little-endian, natural alignment, as x86-64
 * lays them out), with the {@code minsz} ({@code offsetofend} of the last field the kernel requires) of each.
 */
public final class VfioLayouts {
    private VfioLayouts() {
    }

    /** {@code __u32}, little-endian. */
    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** {@code __u64}, little-endian. */
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** {@code __u16}, little-endian. */
    public static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** {@code struct vfio_group_status}. */
    public static final StructLayout GROUP_STATUS = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"));
    /** {@code struct vfio_iommu_type1_info}; minsz ends at {@code iova_pgsizes}. */
    public static final StructLayout IOMMU_TYPE1_INFO = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U64.withName("iova_pgsizes"),
            U32.withName("cap_offset"), U32.withName("pad"));
    /** {@code struct vfio_iommu_type1_dma_map}. */
    public static final StructLayout DMA_MAP = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U64.withName("vaddr"), U64.withName("iova"),
            U64.withName("size"));
    /** {@code struct vfio_iommu_type1_dma_unmap} without its flexible {@code data[]}. */
    public static final StructLayout DMA_UNMAP = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U64.withName("iova"), U64.withName("size"));
    /** {@code struct vfio_info_cap_header}. */
    public static final StructLayout CAP_HEADER = MemoryLayout.structLayout(
            U16.withName("id"), U16.withName("version"), U32.withName("next"));
    /** {@code struct vfio_iova_range}. */
    public static final StructLayout IOVA_RANGE = MemoryLayout.structLayout(U64.withName("start"), U64.withName("end"));
    /** {@code struct vfio_iommu_type1_info_cap_iova_range} without its ranges. */
    public static final StructLayout CAP_IOVA_RANGE = MemoryLayout.structLayout(
            CAP_HEADER.withName("header"), U32.withName("nr_iovas"), U32.withName("reserved"));
    /** {@code struct vfio_iommu_type1_info_dma_avail}. */
    public static final StructLayout CAP_DMA_AVAIL = MemoryLayout.structLayout(
            CAP_HEADER.withName("header"), U32.withName("avail"));
    /** {@code struct vfio_device_info}; minsz ends at {@code num_irqs}. */
    public static final StructLayout DEVICE_INFO = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("num_regions"), U32.withName("num_irqs"),
            U32.withName("cap_offset"), U32.withName("pad"));
    /** {@code struct vfio_region_info}. */
    public static final StructLayout REGION_INFO = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("index"), U32.withName("cap_offset"),
            U64.withName("size"), U64.withName("offset"));
    /** {@code struct vfio_region_sparse_mmap_area}. */
    public static final StructLayout SPARSE_MMAP_AREA = MemoryLayout.structLayout(
            U64.withName("offset"), U64.withName("size"));
    /** {@code struct vfio_region_info_cap_sparse_mmap} without its areas. */
    public static final StructLayout CAP_SPARSE_MMAP = MemoryLayout.structLayout(
            CAP_HEADER.withName("header"), U32.withName("nr_areas"), U32.withName("reserved"));

    /** {@code struct vfio_irq_info}. */
    public static final StructLayout IRQ_INFO = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("index"), U32.withName("count"));
    /** {@code struct vfio_irq_set} without its {@code data[]}: the data (bools or {@code __s32} fds) follow at 20. */
    public static final StructLayout IRQ_SET = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("index"), U32.withName("start"),
            U32.withName("count"));

    /** {@code struct vfio_pci_hot_reset_info} without its devices. */
    public static final StructLayout HOT_RESET_INFO = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("count"));
    /** {@code struct vfio_pci_dependent_device} (the group id form). */
    public static final StructLayout DEPENDENT_DEVICE = MemoryLayout.structLayout(
            U32.withName("group_id"), U16.withName("segment"), ValueLayout.JAVA_BYTE.withName("bus"),
            ValueLayout.JAVA_BYTE.withName("devfn"));

    /** {@code struct vfio_device_feature} without its {@code data[]}, which follows at 8. */
    public static final StructLayout DEVICE_FEATURE = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"));
    /** {@code struct vfio_device_feature_dma_buf} without its {@code dma_ranges[]}, which follow at 16. */
    public static final StructLayout FEATURE_DMA_BUF = MemoryLayout.structLayout(
            U32.withName("region_index"), U32.withName("open_flags"), U32.withName("flags"),
            U32.withName("nr_ranges"));
    /** {@code struct vfio_region_dma_range}. */
    public static final StructLayout REGION_DMA_RANGE = MemoryLayout.structLayout(
            U64.withName("offset"), U64.withName("length"));
    /** {@code struct vfio_pci_hot_reset} without its {@code group_fds[]} ({@code __s32} each), which follow at 12. */
    public static final StructLayout PCI_HOT_RESET = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("count"));

    public static final long GROUP_STATUS_MINSZ = GROUP_STATUS.byteSize();
    public static final long IOMMU_TYPE1_INFO_MINSZ = 16;
    public static final long DMA_MAP_MINSZ = DMA_MAP.byteSize();
    public static final long DMA_UNMAP_MINSZ = DMA_UNMAP.byteSize();
    public static final long DEVICE_INFO_MINSZ = 16;
    public static final long REGION_INFO_MINSZ = REGION_INFO.byteSize();

    /** The byte offset of member {@code name} of {@code struct}. */
    public static long offset(StructLayout struct, String name) {
        return struct.byteOffset(MemoryLayout.PathElement.groupElement(name));
    }

    /** Reads the {@code __u32} member {@code name} of {@code struct} at the start of {@code seg}. */
    public static int u32(MemorySegment seg, StructLayout struct, String name) {
        return seg.get(U32, offset(struct, name));
    }

    /** Reads the {@code __u64} member {@code name} of {@code struct} at the start of {@code seg}. */
    public static long u64(MemorySegment seg, StructLayout struct, String name) {
        return seg.get(U64, offset(struct, name));
    }

    /** Writes the {@code __u32} member {@code name} of {@code struct} at the start of {@code seg}. */
    public static void setU32(MemorySegment seg, StructLayout struct, String name, int value) {
        seg.set(U32, offset(struct, name), value);
    }

    /** Writes the {@code __u64} member {@code name} of {@code struct} at the start of {@code seg}. */
    public static void setU64(MemorySegment seg, StructLayout struct, String name, long value) {
        seg.set(U64, offset(struct, name), value);
    }
}
