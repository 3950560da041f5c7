package dev.dmaplane.nvmeuser;

/**
 * What the driver learnt bringing a controller up (Identify Controller and Namespace, CAP, Set Features Number of
 * Queues; SPDK's {@code spdk_nvme_ctrlr_data} and {@code spdk_nvme_ns_data} in short).
 *
 * @param bdf         the PCI function
 * @param vendor      PCI Vendor ID (Identify Controller VID)
 * @param serial      serial number, trimmed
 * @param model       model number, trimmed
 * @param firmware    firmware revision, trimmed
 * @param blocks      namespace 1's size in logical blocks (NSZE)
 * @param blockSize   bytes per logical block (LBA format 0)
 * @param maxTransfer the most bytes one command moves (MDTS in CAP.MPSMIN pages; 0 MDTS: unlimited, given as 1 MiB)
 * @param maxEntries  entries an I/O queue may have (CAP.MQES + 1)
 * @param ioQueues    I/O queue pairs the controller granted
 */
public record NvmeIdentity(String bdf, int vendor, String serial, String model, String firmware, long blocks,
                           int blockSize, long maxTransfer, int maxEntries, int ioQueues) {
    /** Bytes in namespace 1. */
    public long namespaceBytes() {
        return blocks * blockSize;
    }
}
