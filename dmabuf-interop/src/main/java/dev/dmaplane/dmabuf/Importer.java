package dev.dmaplane.dmabuf;

import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ConsumerType;

/**
 * What a dynamic importer hands to {@link DmaBuf#attach} ({@code struct dma_buf_attach_ops}): whether it can use
 * peer-to-peer addresses (device memory behind another device's BAR) and the callback the exporter calls, with the
 * reservation lock held, when the buffer is about to move or is revoked. A static importer passes no importer
 * ({@code null}) to {@code attach}.
 * <p>
 * After {@code moveNotify} the importer's mappings stay usable only until the move fence (added with
 * {@code KERNEL} usage to the buffer's reservation) signals; it should unmap them and map again, waiting for the
 * {@code KERNEL} fences before the device touches the new mapping. A mapping used after the move completed is
 * stale and the device's access faults.
 *
 * @param allowPeer2Peer whether the importer can reach the buffer through peer-to-peer bus addresses
 *                       ({@code allow_peer2peer})
 * @param onMove         {@code move_notify}; required: {@code attach} refuses an importer without it
 *                       ({@code EINVAL})
 * @param physical       the importer maps the exporter's physical ranges ({@link DmaBuf#physRanges}) into an IOMMU
 *                       domain of its own, never through its device's DMA API (iommufd's
 *                       {@code iopt_dmabuf_attach_revoke_ops}); its {@code move_notify} means revoke. Exporters do
 *                       not judge its device for peer-to-peer: whoever reaches the ranges through that IOMMU is
 *                       the importer's concern
 */
public record Importer(boolean allowPeer2Peer, MoveNotify onMove, boolean physical) {

    /** A dynamic importer of sg_table mappings. */
    public Importer(boolean allowPeer2Peer, MoveNotify onMove) {
        this(allowPeer2Peer, onMove, false);
    }

    /**
     * An importer of physical ranges, peer-to-peer allowed, revoked through {@code onRevoke}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a null {@code onRevoke}
     */
    public static Importer physical(MoveNotify onRevoke) {
        ErrnoException.requireNonNull(onRevoke, "Importer.physical: move_notify");
        return new Importer(true, onRevoke, true);
    }

    /** {@code move_notify}: called with the buffer's reservation lock held; must not take it. */
    @ConsumerType
    @FunctionalInterface
    public interface MoveNotify {
        void moveNotify(Attachment attachment);
    }

    /** Calls the importer's {@code move_notify}. */
    public void moveNotify(Attachment attachment) {
        onMove.moveNotify(attachment);
    }
}
