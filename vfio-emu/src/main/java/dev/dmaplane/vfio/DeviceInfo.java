package dev.dmaplane.vfio;

/** {@code struct vfio_device_info}: {@code VFIO_DEVICE_FLAGS_*}, the number of regions and of IRQ indexes. */
public record DeviceInfo(int flags, int numRegions, int numIrqs) {
}
