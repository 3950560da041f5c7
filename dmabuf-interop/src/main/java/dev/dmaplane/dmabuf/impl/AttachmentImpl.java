package dev.dmaplane.dmabuf.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.Importer;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** {@code struct dma_buf_attachment}; its mapping list is guarded by the buffer's mapping lock. */
final class AttachmentImpl implements Attachment {
    final DmaBufImpl dmabuf;
    private final Device device;
    private final Importer importer;
    private volatile boolean peer2peer;
    private volatile Object exporterPriv;
    volatile boolean detached;
    /** Pins from {@code dma_buf_pin}; guarded by the reservation lock. */
    volatile int importerPins;
    /** Pins the core took at map for a static importer of a dynamic exporter; guarded by the reservation lock. */
    volatile int corePins;
    /** Guarded by {@code dmabuf.mappingLock}. */
    final List<MappingImpl> mappings = new ArrayList<>();

    AttachmentImpl(DmaBufImpl dmabuf, Device device, Importer importer) {
        this.dmabuf = dmabuf;
        this.device = device;
        this.importer = importer;
        this.peer2peer = importer != null && importer.allowPeer2Peer();
    }

    @Override
    public DmaBuf dmabuf() {
        return dmabuf;
    }

    @Override
    public Device device() {
        return device;
    }

    @Override
    public Optional<Importer> importer() {
        return Optional.ofNullable(importer);
    }

    @Override
    public boolean isDynamic() {
        return importer != null;
    }

    @Override
    public boolean peer2peer() {
        return peer2peer;
    }

    @Override
    public void setPeer2Peer(boolean allowed) {
        this.peer2peer = allowed && importer != null && importer.allowPeer2Peer();
    }

    @Override
    public Object exporterPriv() {
        return exporterPriv;
    }

    @Override
    public void setExporterPriv(Object priv) {
        this.exporterPriv = priv;
    }

    @Override
    public boolean isDetached() {
        return detached;
    }

    @Override
    public int pinCount() {
        return importerPins + corePins;
    }

    @Override
    public List<DmaBufMapping> mappings() {
        synchronized (dmabuf.mappingLock) {
            return List.copyOf(mappings);
        }
    }

    @Override
    public String toString() {
        return "attachment of " + device.name() + " to dma-buf " + dmabuf.ino() + (isDynamic() ? " (dynamic)" : " (static)");
    }
}
