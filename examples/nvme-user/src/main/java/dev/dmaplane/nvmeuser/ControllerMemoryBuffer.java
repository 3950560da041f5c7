package dev.dmaplane.nvmeuser;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.vfio.RegionInfo;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioUapi;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.nvme.NvmeRegs;

/**
 * The controller memory buffer of an attached controller (NVM Express Base 1.4, 3.1.12 to 3.1.14: CMBLOC, CMBSZ,
 * CMBMSC), enabled as {@code nvme_map_cmb} in {@code drivers/nvme/host/pci.c} does: CMBMSC.CRE so that CMBLOC and
 * CMBSZ report it, then CMBMSC.CRE|CMSE with the controller base address, the bus address of the BAR at CMBLOC's
 * offset; PRPs inside {@code [busAddress, busAddress + size)} then name the buffer, not host memory.
 *
 * @param bar        the BAR holding the buffer (CMBLOC.BIR)
 * @param barOffset  where the buffer starts in that BAR (CMBLOC.OFST in CMBSZ.SZU units)
 * @param busAddress the controller base address written to CMBMSC: the buffer's first byte on the bus
 * @param size       the buffer's bytes (CMBSZ.SZ in CMBSZ.SZU units)
 */
public record ControllerMemoryBuffer(int bar, long barOffset, long busAddress, long size) {
    private static final long PAGE = 4096;

    /**
     * Enables the buffer of {@code c} and says where it is.
     *
     * @throws ErrnoException {@code EOPNOTSUPP} when CAP.CMBS is clear or CMBSZ reads 0 after CMBMSC.CRE (no
     *                        buffer), {@code ENODEV} when CMBLOC names a BAR the device file does not offer or the
     *                        buffer ends past it
     */
    public static ControllerMemoryBuffer enable(NvmeController c) {
        ErrnoException.requireNonNull(c, "ControllerMemoryBuffer.enable: controller");
        String bdf = c.frontEnd().bdf();
        if (!NvmeRegs.capCmbs(c.read64(NvmeRegs.CAP))) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "nvme " + bdf + ": CAP.CMBS is 0: no controller memory buffer");
        }
        c.write64(NvmeRegs.CMBMSC, NvmeRegs.CMBMSC_CRE);
        int cmbsz = c.read32(NvmeRegs.CMBSZ);
        int cmbloc = c.read32(NvmeRegs.CMBLOC);
        if (cmbsz == 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "nvme " + bdf + ": CMBSZ reads 0 with CMBMSC.CRE set");
        }
        int bir = cmbloc & NvmeRegs.CMBLOC_BIR_MASK;
        long unit = 4096L << 4 * (cmbsz >>> NvmeRegs.CMBSZ_SZU_SHIFT & 0xf);
        long offset = Integer.toUnsignedLong(cmbloc >>> 12) * unit;
        long size = NvmeRegs.cmbBytes(cmbsz);
        VfioDevice device = c.frontEnd().device();
        RegionInfo region = bir <= 5 ? device.regionInfo(VfioUapi.VFIO_PCI_BAR0_REGION_INDEX + bir) : null;
        if (region == null || region.size() == 0 || offset > region.size() || size > region.size() - offset) {
            throw new ErrnoException(Errno.ENODEV, String.format("nvme %s: CMBLOC names BAR%d offset %#x, %#x bytes,"
                    + " beyond what the device file offers", bdf, bir, offset, size));
        }
        long bus = barAddress(device, bir) + offset;
        c.write64(NvmeRegs.CMBMSC, NvmeRegs.CMBMSC_CRE | NvmeRegs.CMBMSC_CMSE | bus);
        return new ControllerMemoryBuffer(bir, offset, bus, size);
    }

    /** The BAR's bus address as its (virtualized) base address registers read, as {@code pci_bus_address} gives it. */
    private static long barAddress(VfioDevice device, int bir) {
        int config = VfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
        long low = device.read(config, PciRegs.BASE_ADDRESS_0 + 4L * bir, 4);
        long address = low & ~0xfL;
        if ((low & 0x6) == 0x4 && bir < 5) {
            address |= device.read(config, PciRegs.BASE_ADDRESS_0 + 4L * (bir + 1), 4) << 32;
        }
        return address;
    }

    /** Whether {@code length} bytes at bus address {@code addr} lie in the buffer. */
    public boolean contains(long addr, long length) {
        return Long.compareUnsigned(addr, busAddress) >= 0 && Long.compareUnsigned(addr - busAddress, size) < 0
                && length >= 0 && length <= size - (addr - busAddress);
    }

    /**
     * {@code length} bytes of the buffer from {@code offset} as a dma-buf (vfio-pci's {@code VFIO_DEVICE_FEATURE}
     * {@code DMA_BUF} of that range of the BAR, {@code drivers/vfio/pci/vfio_pci_dmabuf.c}): the caller holds the one
     * reference returned and puts it; the descriptor the feature made is closed again. Only an importer p2pdma
     * finds a peer path to can attach it.
     *
     * @throws ErrnoException {@code EINVAL} for a range outside the buffer or not page-aligned; vfio-pci's errno
     */
    public DmaBuf exportDmaBuf(NvmeController c, long offset, long length) {
        ErrnoException.requireNonNull(c, "ControllerMemoryBuffer.exportDmaBuf: controller");
        if (offset < 0 || length <= 0 || offset > size || length > size - offset || ((offset | length) & (PAGE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("nvme: range %#x+%#x is not page-aligned inside the "
                    + "%#x-byte controller memory buffer", offset, length, size));
        }
        VfioUser user = c.frontEnd().user();
        int fd = c.frontEnd().device().exportDmaBuf(bar, new long[]{barOffset + offset, length});
        try {
            return user.dmaBuf(fd);
        } finally {
            user.close(fd);
        }
    }
}
