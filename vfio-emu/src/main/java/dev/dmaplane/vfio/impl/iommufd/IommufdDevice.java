package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.vfio.impl.ResvRegions;

import java.util.ArrayList;
import java.util.List;

/**
 * A device bound to an iommufd context ({@code struct iommufd_device} of {@code drivers/iommu/iommufd/device.c}),
 * what VFIO's device cdev holds between {@code VFIO_DEVICE_BIND_IOMMUFD} and its close: its IOMMU group is owned by
 * the context, and it attaches to a hardware page table, given or made for an IOAS (auto domain), replaces it while
 * DMA goes on, and detaches (DMA blocked). Attaching enforces the device's reserved regions in the IOAS
 * ({@code iopt_table_enforce_dev_resv_regions}). Devices of one IOMMU group share one page table. Every method takes
 * the context's lock.
 */
public final class IommufdDevice extends IommufdObject {
    private final IommufdCtx ctx;
    private final Device dev;
    private final IommuGroup group;
    private Hwpt hwpt;
    private boolean unbound;

    IommufdDevice(int id, IommufdCtx ctx, Device dev, IommuGroup group) {
        super(id, Type.DEVICE);
        this.ctx = ctx;
        this.dev = dev;
        this.group = group;
    }

    /** The context the device is bound to ({@code vfio_iommufd_device_ictx}). */
    public IommufdCtx ctx() {
        return ctx;
    }

    /** The device ID in the context ({@code out_devid}). */
    public int devId() {
        return id;
    }

    Device device() {
        return dev;
    }

    IommuGroup group() {
        return group;
    }

    /** Whether a page table is attached. */
    public boolean attached() {
        synchronized (ctx) {
            return hwpt != null;
        }
    }

    /**
     * {@code iommufd_device_attach}: to HWPT {@code ptId}, or to an IOAS through an auto domain (one already made for
     * it, else a new one).
     *
     * @return the ID of the HWPT attached (what VFIO writes back into {@code pt_id})
     * @throws ErrnoException {@code ENOENT} for an ID that names nothing, {@code EINVAL} for an object that is no
     *                        IOAS or HWPT, when attached already or another device of the group is attached
     *                        elsewhere, or for a dirty-tracking HWPT on an IOMMU without dirty tracking,
     *                        {@code EADDRINUSE} when the device's reserved regions are mapped in the IOAS
     */
    public int attach(int ptId) {
        synchronized (ctx) {
            requireBound("attach");
            if (hwpt != null) {
                throw new ErrnoException(Errno.EINVAL, this + " is attached to " + hwpt + " already");
            }
            Hwpt h = ctx.resolvePt(ptId);
            try {
                reserveRegions(h.ioas);
                try {
                    ctx.attachGroup(this, h);
                } catch (RuntimeException e) {
                    h.ioas.unreserve(this);
                    throw e;
                }
            } catch (RuntimeException e) {
                ctx.dropIfUnused(h);
                throw e;
            }
            hwpt = h;
            h.devices++;
            h.users++;
            return h.id;
        }
    }

    /**
     * {@code iommufd_device_replace}: the group moves to the page table {@code ptId} names without passing through a
     * blocking domain, so DMA in progress goes on through the new translations; an auto domain left without devices
     * goes.
     *
     * @return the ID of the HWPT attached now
     * @throws ErrnoException {@code EINVAL} when nothing is attached, else as {@link #attach}
     */
    public int replace(int ptId) {
        synchronized (ctx) {
            requireBound("replace");
            if (hwpt == null) {
                throw new ErrnoException(Errno.EINVAL, this + " is not attached: nothing to replace");
            }
            Hwpt old = hwpt;
            Hwpt h = ctx.resolvePt(ptId);
            if (h == old) {
                return h.id;
            }
            List<IommufdDevice> moving = ctx.attachedDevices(group, old);
            List<IommufdDevice> reserved = new ArrayList<>();
            try {
                if (h.ioas != old.ioas) {
                    for (IommufdDevice d : moving) {
                        d.reserveRegions(h.ioas);
                        reserved.add(d);
                    }
                }
                ctx.replaceGroup(group, old, h);
            } catch (RuntimeException e) {
                reserved.forEach(d -> h.ioas.unreserve(d));
                ctx.dropIfUnused(h);
                throw e;
            }
            for (IommufdDevice d : moving) {
                if (h.ioas != old.ioas) {
                    old.ioas.unreserve(d);
                }
                old.devices--;
                old.users--;
                h.devices++;
                h.users++;
                d.hwpt = h;
            }
            ctx.dropIfUnused(old);
            return h.id;
        }
    }

    /** {@code iommufd_device_detach}: the last device of the group leaving blocks its DMA; nothing if not attached. */
    public void detach() {
        synchronized (ctx) {
            if (hwpt == null) {
                return;
            }
            Hwpt h = hwpt;
            ctx.detachGroup(this, h);
            h.ioas.unreserve(this);
            h.devices--;
            h.users--;
            hwpt = null;
            ctx.dropIfUnused(h);
        }
    }

    /** {@code iommufd_device_unbind}: detached, the group's ownership dropped with its last device, the ID gone. */
    public void unbind() {
        synchronized (ctx) {
            if (unbound) {
                return;
            }
            detach();
            unbound = true;
            ctx.unbound(this);
        }
    }

    private void reserveRegions(Ioas ioas) {
        List<long[]> regions = ResvRegions.ofDevice();
        try {
            for (long[] r : regions) {
                ioas.reserve(r[0], r[1], this);
            }
        } catch (RuntimeException e) {
            ioas.unreserve(this);
            throw e;
        }
    }

    private void requireBound(String op) {
        if (unbound) {
            throw new ErrnoException(Errno.ENODEV, op + ": " + this + " is unbound");
        }
    }

    @Override
    public String toString() {
        return "iommufd device " + id + " (" + dev.name() + ")";
    }
}
