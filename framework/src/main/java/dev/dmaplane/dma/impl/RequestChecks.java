package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaDebugReport.Kind;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.mem.PhysicalAddressMap;
import dev.dmaplane.mem.PhysicalRegion;
import dev.dmaplane.trace.TraceKind;

import java.util.Map;

/**
 * What refuses one device's memory request before a byte moves, and who hears of it: the requester's own state
 * (present, Bus Master Enable, address width), the host bridge's decode (else an Unsupported Request, which the
 * fabric logs as the PCIe Base Specification's error logging does), and dma-debug's check of the access against the
 * device's live mappings and peer windows ({@code kernel/dma/debug.c}'s entries, {@link DebugEntries}). Every
 * refusal is traced as a fault and thrown as a {@link DmaFaultException}.
 */
final class RequestChecks {
    /** A memory request TLP never crosses a 4 KiB boundary (PCIe Base Spec 2.2.7). */
    private static final long TLP_BOUNDARY = 4096;

    private final DeviceDma dma;
    private final PhysicalAddressMap physical;

    RequestChecks(DeviceDma dma) {
        this.dma = dma;
        this.physical = dma.sys.physical;
    }

    /**
     * What the requester itself must satisfy to put a request on the bus at all: presence, Bus Master Enable, and an
     * address its hardware can drive ({@link dev.dmaplane.device.Device#dmaAddressBits}). The kernel's DMA mask is not
     * checked here: it bounds what the DMA API hands out ({@code dma_capable} of {@code include/linux/dma-direct.h},
     * which {@code kernel/dma/direct.c} asks), not what the device can put on the bus, so a VFIO user's IOVA is
     * bounded by the IOMMU's aperture and this width.
     */
    void checkRequester(long addr, long len, boolean write) {
        if (!dma.device.isPresent()) {
            throw refuse(addr, write, FaultReason.DEVICE_GONE, "device has left its bus");
        }
        if (!dma.device.busMasterEnabled()) {
            throw refuse(addr, write, FaultReason.BUS_MASTER_DISABLED, "bus mastering is disabled (command register BME clear)");
        }
        int bits = dma.device.dmaAddressBits();
        if (!fitsWidth(addr, len, bits)) {
            throw refuse(addr, write, FaultReason.OUT_OF_RANGE, "address beyond the device's " + bits + "-bit address width");
        }
    }

    /** Whether {@code [addr, addr + len)} lies below {@code 2^bits} without wrapping past the end of the 64-bit space. */
    static boolean fitsWidth(long addr, long len, int bits) {
        long last = addr + len - 1;
        return Long.compareUnsigned(last, addr) >= 0 && (bits == 64 || last >>> bits == 0);
    }

    /**
     * The host bridge's side of a request that went upstream: RAM or a device region must decode {@code [phys, phys +
     * n)}, else the root complex completes the request at {@code addr} as an Unsupported Request.
     */
    void checkDecoded(long addr, long phys, long n, boolean write, boolean posted) {
        if (physical.ram().contains(phys, n)) {
            return;
        }
        PhysicalRegion r = physical.regionAt(phys);
        if (r == null || phys - r.base() > r.size() - n) {
            throw unsupported(addr, n, write, posted, null, String.format("the host bridge decodes nothing at %#x+%#x", phys, n));
        }
        if (!r.decodes()) {
            throw unsupported(addr, n, write, posted, r, String.format("%s at %#x does not decode memory now", r.name(), phys));
        }
    }

    /**
     * A request the fabric completes as an Unsupported Request: the fabric logs the one TLP at {@code addr} (its
     * bytes up to {@code remaining}, not crossing 4 KiB) and the region {@code at} that did not decode it, if any;
     * then it is traced and refused.
     */
    DmaFaultException unsupported(long addr, long remaining, boolean write, boolean posted, PhysicalRegion at,
                                  String reason) {
        int tlp = (int) Math.min(remaining, TLP_BOUNDARY - (addr & (TLP_BOUNDARY - 1)));
        dma.sys.peerRouter.unsupportedRequest(dma.device, addr, Math.max(1, tlp), posted, at);
        return refuse(addr, write, FaultReason.UNSUPPORTED_REQUEST, reason);
    }

    /** A transaction the bus never carries (no IOMMU involved): traced as a fault, then refused. */
    DmaFaultException refuse(long addr, boolean write, FaultReason why, String reason) {
        dma.sys.tracer.emit(TraceKind.FAULT, dma.deviceName(), addr, 0, (write ? "write" : "read") + ": " + reason);
        return new DmaFaultException(dma.deviceName(), addr, write, why, reason);
    }

    /** An IOMMU refusal, reported to dma-debug first (with the revoked mapping it hit, if any). */
    DmaFaultException debugFault(IommuDomain domain, DmaFaultException e, long addr, long len, boolean write) {
        if (dma.sys.debug.enabled() && domain.type() == IommuDomainType.DMA) {
            Map.Entry<Mapping, String> rv = dma.entries.revokedAt(addr, len);
            if (rv != null) {
                reportRevoked(rv, addr, len, write);
                return e;
            }
            dma.sys.debug.report(e.reason() == FaultReason.PERMISSION ? Kind.ACCESS_READ_ONLY : Kind.ACCESS_UNMAPPED,
                    dma.deviceName(), addr, len, "device " + (write ? "write" : "read") + " at iova 0x"
                            + Long.toHexString(addr) + " refused by the IOMMU", null);
        }
        return e;
    }

    private void reportRevoked(Map.Entry<Mapping, String> rv, long addr, long len, boolean write) {
        dma.sys.debug.report(Kind.ACCESS_REVOKED, dma.deviceName(), addr, len, "device " + (write ? "write" : "read")
                + " at 0x" + Long.toHexString(addr) + "+" + len + " into a mapping whose access was revoked: "
                + rv.getValue(), rv.getKey().site());
    }

    /**
     * dma-debug on the peer path, which the IOMMU never sees: a request into a bus-address window the device was
     * handed ({@link dev.dmaplane.dma.DmaApi#mapPeer}) and that was revoked or unmapped since is reported with the
     * window's mapping site and refused before any byte moves.
     */
    void checkPeerWindow(long addr, long len, boolean write) {
        DebugEntries.PeerFinding f = dma.entries.checkPeerAccess(addr, len, write);
        if (f == null) {
            return;
        }
        dma.sys.debug.report(f.kind(), dma.deviceName(), addr, len, "device " + (write ? "write" : "read") + " at peer bus address 0x"
                + Long.toHexString(addr) + "+" + len + " into " + f.what(), f.window().site());
        throw refuse(addr, write, f.kind() == Kind.ACCESS_READ_ONLY ? FaultReason.DEBUG_READ_ONLY : FaultReason.DEBUG_UNMAPPED,
                "dma-debug: " + f.what());
    }

    /** dma-debug in pass-through mode: the access must lie in a live mapping, and not write one mapped TO_DEVICE. */
    void checkPassThrough(long addr, long len, boolean write) {
        Map.Entry<Long, DebugEntries.Range> e = dma.entries.ranges.floorEntry(addr);
        DebugEntries.Range r = e == null ? null : e.getValue();
        if (r == null || addr + len > r.start() + r.length()) {
            Map.Entry<Mapping, String> rv = dma.entries.revokedAt(addr, len);
            if (rv != null) {
                reportRevoked(rv, addr, len, write);
                throw refuse(addr, write, FaultReason.DEBUG_UNMAPPED, "dma-debug: mapping was revoked: " + rv.getValue());
            }
            dma.sys.debug.report(Kind.ACCESS_UNMAPPED, dma.deviceName(), addr, len, "device " + (write ? "write" : "read")
                    + " at 0x" + Long.toHexString(addr) + "+" + len + " outside every live DMA mapping", null);
            throw refuse(addr, write, FaultReason.DEBUG_UNMAPPED, "dma-debug: no live mapping covers it");
        }
        if (write && r.direction() == DmaDirection.TO_DEVICE) {
            dma.sys.debug.report(Kind.ACCESS_READ_ONLY, dma.deviceName(), addr, len, "device write at 0x" + Long.toHexString(addr)
                    + " into memory mapped TO_DEVICE", r.mapping().site());
            throw refuse(addr, write, FaultReason.DEBUG_READ_ONLY, "dma-debug: mapping is TO_DEVICE");
        }
    }
}
