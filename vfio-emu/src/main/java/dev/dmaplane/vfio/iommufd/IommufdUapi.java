package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.vfio.VfioUapi;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;

import static dev.dmaplane.vfio.VfioLayouts.U32;
import static dev.dmaplane.vfio.VfioLayouts.U64;

/**
 * The numbers and structures of {@code include/uapi/linux/iommufd.h} ({@code /dev/iommu}) and of the iommufd part of
 * {@code include/uapi/linux/vfio.h} (the device cdev's {@code BIND_IOMMUFD}, {@code ATTACH/DETACH_IOMMUFD_PT}), as
 * x86-64 lays them out. Every iommufd structure starts with {@code __u32 size}; the {@code *_MINSZ} are the sizes
 * below which the kernel answers {@code EINVAL} ({@code iommufd_ioctl_op.min_size}).
 */
public final class IommufdUapi {
    private IommufdUapi() {
    }

    /** {@code IOMMUFD_TYPE}: {@code ';'}, as VFIO's. */
    public static final int IOMMUFD_TYPE = ';';
    /** {@code IOMMUFD_CMD_BASE}. */
    public static final int IOMMUFD_CMD_BASE = 0x80;

    public static final int IOMMU_DESTROY = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE);
    public static final int IOMMU_IOAS_ALLOC = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 1);
    public static final int IOMMU_IOAS_ALLOW_IOVAS = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 2);
    public static final int IOMMU_IOAS_COPY = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 3);
    public static final int IOMMU_IOAS_IOVA_RANGES = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 4);
    public static final int IOMMU_IOAS_MAP = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 5);
    public static final int IOMMU_IOAS_UNMAP = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 6);
    public static final int IOMMU_HWPT_ALLOC = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 9);
    public static final int IOMMU_GET_HW_INFO = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 10);
    public static final int IOMMU_HWPT_SET_DIRTY_TRACKING = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 11);
    public static final int IOMMU_HWPT_GET_DIRTY_BITMAP = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 12);
    public static final int IOMMU_IOAS_MAP_FILE = VfioUapi.io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 15);

    /** {@code VFIO_DEVICE_BIND_IOMMUFD}: {@code _IO(VFIO_TYPE, VFIO_BASE + 18)}. */
    public static final int VFIO_DEVICE_BIND_IOMMUFD = VfioUapi.io(VfioUapi.VFIO_TYPE, VfioUapi.VFIO_BASE + 18);
    /** {@code VFIO_DEVICE_ATTACH_IOMMUFD_PT}. */
    public static final int VFIO_DEVICE_ATTACH_IOMMUFD_PT = VfioUapi.io(VfioUapi.VFIO_TYPE, VfioUapi.VFIO_BASE + 19);
    /** {@code VFIO_DEVICE_DETACH_IOMMUFD_PT}. */
    public static final int VFIO_DEVICE_DETACH_IOMMUFD_PT = VfioUapi.io(VfioUapi.VFIO_TYPE, VfioUapi.VFIO_BASE + 20);

    public static final int IOMMU_IOAS_MAP_FIXED_IOVA = 1;
    public static final int IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
    public static final int IOMMU_IOAS_MAP_READABLE = 1 << 2;

    public static final int IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
    public static final int IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
    public static final int IOMMU_HWPT_DATA_NONE = 0;

    public static final int IOMMU_HW_INFO_TYPE_NONE = 0;
    /** {@code IOMMU_HW_CAP_DIRTY_TRACKING}: the IOMMU behind the device tracks dirty pages. */
    public static final long IOMMU_HW_CAP_DIRTY_TRACKING = 1;

    public static final int IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
    public static final int IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

    /** {@code struct iommu_destroy}. */
    public static final StructLayout DESTROY = MemoryLayout.structLayout(U32.withName("size"), U32.withName("id"));
    /** {@code struct iommu_ioas_alloc}. */
    public static final StructLayout IOAS_ALLOC = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("out_ioas_id"));
    /** {@code struct iommu_iova_range}: {@code start} to {@code last}, inclusive. */
    public static final StructLayout IOVA_RANGE = MemoryLayout.structLayout(U64.withName("start"), U64.withName("last"));
    /** {@code struct iommu_ioas_iova_ranges}; {@code allowed_iovas} is a user pointer to the ranges. */
    public static final StructLayout IOAS_IOVA_RANGES = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U32.withName("num_iovas"), U32.withName("__reserved"),
            U64.withName("allowed_iovas"), U64.withName("out_iova_alignment"));
    /** {@code struct iommu_ioas_allow_iovas}. */
    public static final StructLayout IOAS_ALLOW_IOVAS = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U32.withName("num_iovas"), U32.withName("__reserved"),
            U64.withName("allowed_iovas"));
    /** {@code struct iommu_ioas_map}. */
    public static final StructLayout IOAS_MAP = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("ioas_id"), U32.withName("__reserved"),
            U64.withName("user_va"), U64.withName("length"), U64.withName("iova"));
    /** {@code struct iommu_ioas_map_file}; {@code fd} is an {@code __s32}. */
    public static final StructLayout IOAS_MAP_FILE = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("ioas_id"), U32.withName("fd"),
            U64.withName("start"), U64.withName("length"), U64.withName("iova"));
    /** {@code struct iommu_ioas_copy}. */
    public static final StructLayout IOAS_COPY = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dst_ioas_id"), U32.withName("src_ioas_id"),
            U64.withName("length"), U64.withName("dst_iova"), U64.withName("src_iova"));
    /** {@code struct iommu_ioas_unmap}. */
    public static final StructLayout IOAS_UNMAP = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("ioas_id"), U64.withName("iova"), U64.withName("length"));
    /** {@code struct iommu_hwpt_alloc}. */
    public static final StructLayout HWPT_ALLOC = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dev_id"), U32.withName("pt_id"),
            U32.withName("out_hwpt_id"), U32.withName("__reserved"), U32.withName("data_type"),
            U32.withName("data_len"), U64.withName("data_uptr"));
    /** {@code struct iommu_hw_info}. */
    public static final StructLayout HW_INFO = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("dev_id"), U32.withName("data_len"),
            U64.withName("data_uptr"), U32.withName("out_data_type"), U32.withName("__reserved"),
            U64.withName("out_capabilities"));
    /** {@code struct iommu_hwpt_set_dirty_tracking}. */
    public static final StructLayout HWPT_SET_DIRTY_TRACKING = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("flags"), U32.withName("hwpt_id"), U32.withName("__reserved"));
    /** {@code struct iommu_hwpt_get_dirty_bitmap}; {@code data} is a user pointer to the bitmap of {@code __u64}s. */
    public static final StructLayout HWPT_GET_DIRTY_BITMAP = MemoryLayout.structLayout(
            U32.withName("size"), U32.withName("hwpt_id"), U32.withName("flags"), U32.withName("__reserved"),
            U64.withName("iova"), U64.withName("length"), U64.withName("page_size"), U64.withName("data"));

    /** {@code struct vfio_device_bind_iommufd}; {@code iommufd} is an {@code __s32}. */
    public static final StructLayout BIND_IOMMUFD = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("iommufd"), U32.withName("out_devid"));
    /** {@code struct vfio_device_attach_iommufd_pt}. */
    public static final StructLayout ATTACH_IOMMUFD_PT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"), U32.withName("pt_id"));
    /** {@code struct vfio_device_detach_iommufd_pt}. */
    public static final StructLayout DETACH_IOMMUFD_PT = MemoryLayout.structLayout(
            U32.withName("argsz"), U32.withName("flags"));

    /** {@code offsetofend(struct iommu_hwpt_alloc, __reserved)}. */
    public static final long HWPT_ALLOC_MINSZ = 24;
    /** {@code offsetofend(struct iommu_hw_info, __reserved)}. */
    public static final long HW_INFO_MINSZ = 32;
}
