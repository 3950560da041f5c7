package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import org.osgi.service.component.annotations.Component;

import java.util.function.UnaryOperator;

/**
 * The {@code nvme} device model (QEMU's {@code TYPE_NVME} and {@code nvme_realize}): an NVMe controller whose
 * registers and doorbells are BAR0, with namespaces on memfds or a host file. Machine-file properties:
 * {@code namespaces}, {@code namespaceSize}, {@code lbaSize}, {@code namespaceFile}, {@code ioQueues},
 * {@code maxQueueEntries}, {@code mdts}, {@code doorbellStride}, {@code cmbBar} (a memory BAR offered as the
 * controller memory buffer).
 */
@Component(service = DeviceModel.class)
public final class NvmeModel implements DeviceModel {
    /** The name machine files give it. */
    public static final String NAME = "nvme";

    /** What the controller's storage is seen through: the media itself, or a test's wrapper around it. */
    private final UnaryOperator<Media> media;

    public NvmeModel() {
        this(UnaryOperator.identity());
    }

    /** A model whose controllers reach their media through {@code media}, for tests that stop a command in it. */
    NvmeModel(UnaryOperator<Media> media) {
        this.media = media;
    }

    @Override
    public String name() {
        return NAME;
    }

    /**
     * @throws ErrnoException {@code EINVAL} for a bad property, a BAR0 that is not a non-prefetchable register BAR,
     *                        doorbells that would run into the MSI-X table in BAR0, or a {@code cmbBar} that is not
     *                        a memory BAR of at least 1 MiB
     */
    @Override
    public ModelDevice realize(ModelContext ctx) {
        String where = ctx.function().bdf() + " (model nvme)";
        NvmeConfig cfg = NvmeConfig.parse(where, ctx.properties());
        // PRP and SGL entries carry 64-bit addresses, which drivers/nvme/host/pci.c declares with DMA_BIT_MASK(64)
        ctx.dmaAddressBits(64);
        Bar bar0 = ctx.function().bar(0).orElseThrow(() -> new ErrnoException(Errno.EINVAL, where
                + ": an NVMe controller needs its registers in BAR0"));
        if (bar0.prefetchable()) {
            throw new ErrnoException(Errno.EINVAL, where + ": BAR0 is prefetchable; NVMe Base 2.0 3.1.4 requires the"
                    + " register BAR to be non-prefetchable");
        }
        long limit = ctx.function().msix().filter(m -> m.bar() == 0).map(Msix::tableOffset).orElse(bar0.size());
        if (cfg.doorbellEnd() > limit) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: doorbells of %d queue pairs with stride %d end at"
                    + " %#x, past %#x where BAR0's MSI-X table or end is", where, cfg.ioQueues() + 1,
                    4 << cfg.dstrd(), cfg.doorbellEnd(), limit));
        }
        Cmb cmb = cfg.cmbBar() < 0 ? null : new Cmb(cfg.cmbBar(), ctx.deviceMemory(cfg.cmbBar()), cfg.cmbSupport(), where);
        Media opened = Media.open(where, cfg);
        Media media = opened;
        try {
            media = this.media.apply(opened);
            Controller c = new Controller(ctx, cfg, media, cmb);
            ctx.registers(0, c.registers());
            c.start();
            return c;
        } catch (RuntimeException e) {
            media.close();
            throw e;
        }
    }
}
