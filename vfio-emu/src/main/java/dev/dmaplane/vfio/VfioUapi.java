package dev.dmaplane.vfio;

/**
 * The numbers of {@code include/uapi/linux/vfio.h}: ioctl commands ({@code _IO(VFIO_TYPE, VFIO_BASE + n)}), flags,
 * extensions, region and IRQ indexes and capability IDs, for users that build the structures themselves
 * ({@link VfioLayouts}) and drive {@link VfioUser#ioctl}.
 */
public final class VfioUapi {
    private VfioUapi() {
    }

    /** {@code VFIO_API_VERSION}: what {@link #VFIO_GET_API_VERSION} answers. */
    public static final int VFIO_API_VERSION = 0;
    /** {@code VFIO_TYPE}: the ioctl type byte, {@code ';'}. */
    public static final int VFIO_TYPE = ';';
    /** {@code VFIO_BASE}: the first command number. */
    public static final int VFIO_BASE = 100;

    /** {@code _IO(type, nr)} of {@code include/uapi/asm-generic/ioctl.h}: no direction, no size. */
    public static int io(int type, int nr) {
        return (type & 0xff) << 8 | (nr & 0xff);
    }

    public static final int VFIO_GET_API_VERSION = io(VFIO_TYPE, VFIO_BASE);
    public static final int VFIO_CHECK_EXTENSION = io(VFIO_TYPE, VFIO_BASE + 1);
    public static final int VFIO_SET_IOMMU = io(VFIO_TYPE, VFIO_BASE + 2);
    public static final int VFIO_GROUP_GET_STATUS = io(VFIO_TYPE, VFIO_BASE + 3);
    public static final int VFIO_GROUP_SET_CONTAINER = io(VFIO_TYPE, VFIO_BASE + 4);
    public static final int VFIO_GROUP_UNSET_CONTAINER = io(VFIO_TYPE, VFIO_BASE + 5);
    public static final int VFIO_GROUP_GET_DEVICE_FD = io(VFIO_TYPE, VFIO_BASE + 6);
    public static final int VFIO_DEVICE_GET_INFO = io(VFIO_TYPE, VFIO_BASE + 7);
    public static final int VFIO_DEVICE_GET_REGION_INFO = io(VFIO_TYPE, VFIO_BASE + 8);
    public static final int VFIO_DEVICE_GET_IRQ_INFO = io(VFIO_TYPE, VFIO_BASE + 9);
    public static final int VFIO_DEVICE_SET_IRQS = io(VFIO_TYPE, VFIO_BASE + 10);
    public static final int VFIO_DEVICE_RESET = io(VFIO_TYPE, VFIO_BASE + 11);
    public static final int VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = io(VFIO_TYPE, VFIO_BASE + 12);
    public static final int VFIO_IOMMU_GET_INFO = io(VFIO_TYPE, VFIO_BASE + 12);
    public static final int VFIO_IOMMU_MAP_DMA = io(VFIO_TYPE, VFIO_BASE + 13);
    public static final int VFIO_IOMMU_UNMAP_DMA = io(VFIO_TYPE, VFIO_BASE + 14);
    public static final int VFIO_DEVICE_PCI_HOT_RESET = io(VFIO_TYPE, VFIO_BASE + 13);
    public static final int VFIO_DEVICE_FEATURE = io(VFIO_TYPE, VFIO_BASE + 17);

    /** {@code VFIO_DEVICE_FEATURE_MASK}: the feature number in {@code vfio_device_feature.flags}. */
    public static final int VFIO_DEVICE_FEATURE_MASK = 0xffff;
    public static final int VFIO_DEVICE_FEATURE_GET = 1 << 16;
    public static final int VFIO_DEVICE_FEATURE_SET = 1 << 17;
    public static final int VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
    /** {@code VFIO_DEVICE_FEATURE_DMA_BUF}: GET exports ranges of a BAR as a dma-buf, returning its fd. */
    public static final int VFIO_DEVICE_FEATURE_DMA_BUF = 11;

    /** Extension: the type 1 IOMMU (v1 unmap semantics). */
    public static final int VFIO_TYPE1_IOMMU = 1;
    /** Extension: the type 1 IOMMU, v2 (no partial unmaps). */
    public static final int VFIO_TYPE1v2_IOMMU = 3;
    /** Extension: the IOMMU enforces cache coherency. */
    public static final int VFIO_DMA_CC_IOMMU = 4;
    /** Extension: {@link #VFIO_DMA_UNMAP_FLAG_ALL}. */
    public static final int VFIO_UNMAP_ALL = 9;
    /** Extension: {@link #VFIO_DMA_MAP_FLAG_VADDR} (not offered here). */
    public static final int VFIO_UPDATE_VADDR = 10;

    public static final int VFIO_GROUP_FLAGS_VIABLE = 1;
    public static final int VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

    public static final int VFIO_IOMMU_INFO_PGSIZES = 1;
    public static final int VFIO_IOMMU_INFO_CAPS = 1 << 1;
    /** {@code VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE}, version 1. */
    public static final int VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
    /** {@code VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL}, version 1. */
    public static final int VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

    public static final int VFIO_DMA_MAP_FLAG_READ = 1;
    public static final int VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
    public static final int VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
    public static final int VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1;
    public static final int VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
    public static final int VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;

    public static final int VFIO_DEVICE_FLAGS_RESET = 1;
    public static final int VFIO_DEVICE_FLAGS_PCI = 1 << 1;

    public static final int VFIO_REGION_INFO_FLAG_READ = 1;
    public static final int VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
    public static final int VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
    public static final int VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
    /** {@code VFIO_REGION_INFO_CAP_SPARSE_MMAP}, version 1: the mmap-able areas of a region. */
    public static final int VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;

    public static final int VFIO_PCI_BAR0_REGION_INDEX = 0;
    public static final int VFIO_PCI_BAR5_REGION_INDEX = 5;
    public static final int VFIO_PCI_ROM_REGION_INDEX = 6;
    public static final int VFIO_PCI_CONFIG_REGION_INDEX = 7;
    public static final int VFIO_PCI_VGA_REGION_INDEX = 8;
    public static final int VFIO_PCI_NUM_REGIONS = 9;

    public static final int VFIO_PCI_INTX_IRQ_INDEX = 0;
    public static final int VFIO_PCI_MSI_IRQ_INDEX = 1;
    public static final int VFIO_PCI_MSIX_IRQ_INDEX = 2;
    public static final int VFIO_PCI_ERR_IRQ_INDEX = 3;
    public static final int VFIO_PCI_REQ_IRQ_INDEX = 4;
    public static final int VFIO_PCI_NUM_IRQS = 5;

    public static final int VFIO_IRQ_INFO_EVENTFD = 1;
    public static final int VFIO_IRQ_INFO_MASKABLE = 1 << 1;
    public static final int VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
    public static final int VFIO_IRQ_INFO_NORESIZE = 1 << 3;

    public static final int VFIO_IRQ_SET_DATA_NONE = 1;
    public static final int VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
    public static final int VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
    public static final int VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
    public static final int VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
    public static final int VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;

    /** {@code VFIO_PCI_OFFSET_SHIFT}: a region's offset in the device fd is its index shifted by 40. */
    public static final int VFIO_PCI_OFFSET_SHIFT = 40;

    /** {@code VFIO_PCI_INDEX_TO_OFFSET}. */
    public static long regionOffset(int index) {
        return (long) index << VFIO_PCI_OFFSET_SHIFT;
    }
}
