package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.EnumSet;
import java.util.Set;

/**
 * Device attributes ({@code struct ibv_device_attr} / {@code struct ib_device_attr}): the limits every verb is
 * checked against. Built with {@link #builder()}; every count must be positive.
 *
 * @param fwVer            firmware version text
 * @param nodeGuid         node GUID
 * @param sysImageGuid     system image GUID
 * @param maxMrSize        largest memory region
 * @param pageSizeCap      page sizes the HCA translates with, a bit mask (bit n: 2^n bytes)
 * @param vendorId         IEEE vendor ID
 * @param vendorPartId     vendor part ID
 * @param hwVer            hardware version
 * @param maxQp            queue pairs
 * @param maxQpWr          work requests per queue
 * @param caps             capability flags
 * @param maxSendSge       SGEs per send work request
 * @param maxRecvSge       SGEs per receive work request
 * @param maxSgeRd         SGEs per RDMA read
 * @param maxCq            completion queues
 * @param maxCqe           entries per completion queue
 * @param maxMr            memory regions
 * @param maxPd            protection domains
 * @param maxQpRdAtom      outstanding RDMA reads and atomics a QP serves as target ({@code max_dest_rd_atomic})
 * @param maxQpInitRdAtom  outstanding RDMA reads and atomics a QP may initiate ({@code max_rd_atomic})
 * @param maxResRdAtom     responder resources of the whole device
 * @param atomicCap        atomic guarantee
 * @param maxMw            memory windows
 * @param maxAh            address handles
 * @param maxSrq           shared receive queues
 * @param maxSrqWr         work requests per SRQ
 * @param maxSrqSge        SGEs per SRQ work request
 * @param maxPkeys         P_Keys per port
 * @param localCaAckDelay  local CA ACK delay
 * @param physPortCnt      ports, numbered from 1
 * @param maxInlineData    inline bytes per send
 * @param numCompVectors   completion vectors
 * @param rcOdpCaps        ODP operations of RC QPs (empty without {@link DeviceCap#ON_DEMAND_PAGING})
 * @param udOdpCaps        ODP operations of UD QPs
 */
public record DeviceAttr(String fwVer, long nodeGuid, long sysImageGuid, long maxMrSize, long pageSizeCap, int vendorId,
                         int vendorPartId, int hwVer, int maxQp, int maxQpWr, Set<DeviceCap> caps, int maxSendSge,
                         int maxRecvSge, int maxSgeRd, int maxCq, int maxCqe, int maxMr, int maxPd, int maxQpRdAtom,
                         int maxQpInitRdAtom, int maxResRdAtom, AtomicCap atomicCap, int maxMw, int maxAh, int maxSrq,
                         int maxSrqWr, int maxSrqSge, int maxPkeys, int localCaAckDelay, int physPortCnt,
                         int maxInlineData, int numCompVectors, Set<OdpOp> rcOdpCaps, Set<OdpOp> udOdpCaps) {
    public DeviceAttr {
        caps = caps.isEmpty() ? Set.of() : Set.copyOf(EnumSet.copyOf(caps));
        rcOdpCaps = Set.copyOf(rcOdpCaps);
        udOdpCaps = Set.copyOf(udOdpCaps);
        if (fwVer == null || atomicCap == null) {
            throw new ErrnoException(Errno.EINVAL, "device attributes need a firmware version and an atomic capability");
        }
        int[] counts = {maxQp, maxQpWr, maxSendSge, maxRecvSge, maxSgeRd, maxCq, maxCqe, maxMr, maxPd, maxMw, maxAh,
                maxSrq, maxSrqWr, maxSrqSge, maxPkeys, physPortCnt, numCompVectors};
        for (int c : counts) {
            if (c < 1) {
                throw new ErrnoException(Errno.EINVAL, "device limits must be >= 1: " + c);
            }
        }
        if (maxMrSize < 4096 || pageSizeCap == 0 || maxInlineData < 0 || maxQpRdAtom < 0 || maxQpInitRdAtom < 0) {
            throw new ErrnoException(Errno.EINVAL, "bad device limits: max_mr_size " + maxMrSize + " page_size_cap 0x"
                    + Long.toHexString(pageSizeCap) + " max_inline " + maxInlineData);
        }
    }

    public boolean has(DeviceCap cap) {
        return caps.contains(cap);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** A builder starting from modest soft-HCA limits (those of rdma_rxe's {@code rxe_param.h} order of magnitude). */
    public static final class Builder {
        private String fwVer = "0.0.0";
        private long nodeGuid;
        private long sysImageGuid;
        private long maxMrSize = 1L << 40;
        private long pageSizeCap = 0xFFFF_F000L;
        private int vendorId = 0xFFFFFF;
        private int vendorPartId;
        private int hwVer;
        private int maxQp = 0x10000;
        private int maxQpWr = 0x4000;
        private Set<DeviceCap> caps = EnumSet.noneOf(DeviceCap.class);
        private int maxSendSge = 32;
        private int maxRecvSge = 32;
        private int maxSgeRd = 32;
        private int maxCq = 0x4000;
        private int maxCqe = (1 << 15) - 1;
        private int maxMr = 0x10000;
        private int maxPd = 0x10000;
        private int maxQpRdAtom = 128;
        private int maxQpInitRdAtom = 128;
        private int maxResRdAtom = 0x3f000;
        private AtomicCap atomicCap = AtomicCap.HCA;
        private int maxMw = 0x10000;
        private int maxAh = 0x8000;
        private int maxSrq = 0x4000;
        private int maxSrqWr = 0x4000;
        private int maxSrqSge = 27;
        private int maxPkeys = 64;
        private int localCaAckDelay = 15;
        private int physPortCnt = 1;
        private int maxInlineData = 320;
        private int numCompVectors = 1;
        private Set<OdpOp> rcOdpCaps = EnumSet.noneOf(OdpOp.class);
        private Set<OdpOp> udOdpCaps = EnumSet.noneOf(OdpOp.class);

        private Builder() {
        }

        public Builder fwVer(String v) { fwVer = v; return this; }
        public Builder nodeGuid(long v) { nodeGuid = v; return this; }
        public Builder sysImageGuid(long v) { sysImageGuid = v; return this; }
        public Builder maxMrSize(long v) { maxMrSize = v; return this; }
        public Builder pageSizeCap(long v) { pageSizeCap = v; return this; }
        public Builder vendorId(int v) { vendorId = v; return this; }
        public Builder vendorPartId(int v) { vendorPartId = v; return this; }
        public Builder hwVer(int v) { hwVer = v; return this; }
        public Builder maxQp(int v) { maxQp = v; return this; }
        public Builder maxQpWr(int v) { maxQpWr = v; return this; }
        public Builder caps(Set<DeviceCap> v) { caps = EnumSet.noneOf(DeviceCap.class); caps.addAll(v); return this; }
        public Builder cap(DeviceCap v) { caps.add(v); return this; }
        public Builder maxSendSge(int v) { maxSendSge = v; return this; }
        public Builder maxRecvSge(int v) { maxRecvSge = v; return this; }
        public Builder maxSgeRd(int v) { maxSgeRd = v; return this; }
        public Builder maxCq(int v) { maxCq = v; return this; }
        public Builder maxCqe(int v) { maxCqe = v; return this; }
        public Builder maxMr(int v) { maxMr = v; return this; }
        public Builder maxPd(int v) { maxPd = v; return this; }
        public Builder maxQpRdAtom(int v) { maxQpRdAtom = v; return this; }
        public Builder maxQpInitRdAtom(int v) { maxQpInitRdAtom = v; return this; }
        public Builder maxResRdAtom(int v) { maxResRdAtom = v; return this; }
        public Builder atomicCap(AtomicCap v) { atomicCap = v; return this; }
        public Builder maxMw(int v) { maxMw = v; return this; }
        public Builder maxAh(int v) { maxAh = v; return this; }
        public Builder maxSrq(int v) { maxSrq = v; return this; }
        public Builder maxSrqWr(int v) { maxSrqWr = v; return this; }
        public Builder maxSrqSge(int v) { maxSrqSge = v; return this; }
        public Builder maxPkeys(int v) { maxPkeys = v; return this; }
        public Builder localCaAckDelay(int v) { localCaAckDelay = v; return this; }
        public Builder physPortCnt(int v) { physPortCnt = v; return this; }
        public Builder maxInlineData(int v) { maxInlineData = v; return this; }
        public Builder numCompVectors(int v) { numCompVectors = v; return this; }
        public Builder rcOdpCaps(Set<OdpOp> v) { rcOdpCaps = EnumSet.noneOf(OdpOp.class); rcOdpCaps.addAll(v); return this; }
        public Builder udOdpCaps(Set<OdpOp> v) { udOdpCaps = EnumSet.noneOf(OdpOp.class); udOdpCaps.addAll(v); return this; }

        public DeviceAttr build() {
            return new DeviceAttr(fwVer, nodeGuid, sysImageGuid, maxMrSize, pageSizeCap, vendorId, vendorPartId, hwVer,
                    maxQp, maxQpWr, caps, maxSendSge, maxRecvSge, maxSgeRd, maxCq, maxCqe, maxMr, maxPd, maxQpRdAtom,
                    maxQpInitRdAtom, maxResRdAtom, atomicCap, maxMw, maxAh, maxSrq, maxSrqWr, maxSrqSge, maxPkeys,
                    localCaAckDelay, physPortCnt, maxInlineData, numCompVectors, rcOdpCaps, udOdpCaps);
        }
    }
}
