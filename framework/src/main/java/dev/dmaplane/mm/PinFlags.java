package dev.dmaplane.mm;

/** Flags of a pin request ({@code FOLL_*} of {@code Documentation/core-api/pin_user_pages.rst}). */
public enum PinFlags {
    /** {@code FOLL_WRITE}: the device will write the pages; needs a writable VMA and breaks copy-on-write. */
    WRITE,
    /**
     * {@code FOLL_LONGTERM}: the pin may last indefinitely (RDMA registration, VFIO); refused on fsdax and, with
     * {@link #WRITE}, on shared file mappings that need dirty tracking.
     */
    LONGTERM
}
