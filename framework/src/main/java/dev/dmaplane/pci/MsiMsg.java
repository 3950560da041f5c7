package dev.dmaplane.pci;

import dev.dmaplane.pci.Msix.Sink;

import java.util.List;

/**
 * {@code struct msi_msg}: the memory write an MSI or MSI-X vector is, Message Address and Message Data, with the
 * vector it is for.
 */
record MsiMsg(int vector, long address, int data) {
    /**
     * Writes each of {@code messages} to the sink attached to {@code slot} at that moment, counted delivered, or
     * counts it dropped when none is; the caller holds no lock of its own.
     *
     * @return how many were delivered
     */
    static int send(SinkSlot<Sink> slot, List<MsiMsg> messages) {
        int sent = 0;
        for (MsiMsg m : messages) {
            Sink s = slot.get();
            if (s == null) {
                slot.countDropped();
                continue;
            }
            slot.countDelivered();
            s.message(m.vector(), m.address(), m.data());
            sent++;
        }
        return sent;
    }
}
