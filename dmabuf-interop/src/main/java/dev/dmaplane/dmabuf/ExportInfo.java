package dev.dmaplane.dmabuf;

import dev.dmaplane.fence.Reservation;

/**
 * {@code struct dma_buf_export_info}: what {@link DmaBufs#export} needs.
 *
 * @param exporterName the exporter's name ({@code exp_name}) shown in bufinfo
 * @param size         bytes; must be positive and a multiple of the page size
 * @param ops          the exporter's operations
 * @param resv         a reservation shared with the exporter's own object, or null for one of the buffer's own
 * @param priv         the exporter's private data ({@code priv}), or null
 */
public record ExportInfo(String exporterName, long size, Exporter ops, Reservation resv, Object priv) {

    /** An export with its own reservation and no private data. */
    public static ExportInfo of(String exporterName, long size, Exporter ops) {
        return new ExportInfo(exporterName, size, ops, null, null);
    }

    /** This export with {@code priv} as private data. */
    public ExportInfo withPriv(Object newPriv) {
        return new ExportInfo(exporterName, size, ops, resv, newPriv);
    }

    /** This export sharing {@code reservation}. */
    public ExportInfo withResv(Reservation reservation) {
        return new ExportInfo(exporterName, size, ops, reservation, priv);
    }
}
