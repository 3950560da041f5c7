package dev.dmaplane.dmabuf;

import dev.dmaplane.device.Device;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Optional;

/**
 * A device attached to a dma-buf ({@code struct dma_buf_attachment}): the importer's device, its importer ops
 * (dynamic) or none (static), whether peer-to-peer addresses may be handed to it, and its mappings.
 */
@ProviderType
public interface Attachment {
    DmaBuf dmabuf();

    /** The importing device; mappings are made for its DMA API. */
    Device device();

    /** The importer ops, empty for a static importer. */
    Optional<Importer> importer();

    /** {@code dma_buf_attachment_is_dynamic}: whether the importer handles moves. */
    boolean isDynamic();

    /**
     * {@code attach->peer2peer}: the importer allows peer-to-peer addresses; an exporter clears it
     * ({@link #setPeer2Peer}) in its attach op when peer-to-peer between the devices is impossible.
     */
    boolean peer2peer();

    /** Lets the exporter's attach op record that peer-to-peer cannot be used for this attachment. */
    void setPeer2Peer(boolean allowed);

    /** The exporter's private data for this attachment ({@code attach->priv}), or null. */
    Object exporterPriv();

    void setExporterPriv(Object priv);

    /** Whether the attachment was detached. */
    boolean isDetached();

    /** Pins held through {@link DmaBuf#pin} plus pins the core took for a static importer's mappings. */
    int pinCount();

    /** Mappings not yet unmapped (live, moving or stale). */
    List<DmaBufMapping> mappings();
}
