package dev.dmaplane.device;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A device on a bus ({@code struct device}): a name, a parent, a bound driver, device-managed resources and the
 * DMA API it reaches memory through.
 */
public abstract class Device {
    private final String name;
    private final Device parent;
    private final Devres devres;
    private final List<Device> children = new CopyOnWriteArrayList<>();
    private final List<Runnable> removeListeners = new CopyOnWriteArrayList<>();
    private volatile Driver driver;
    private volatile BoundDevice binding;
    private volatile DmaApi dma;
    private volatile boolean present;
    private volatile String driverOverride;

    protected Device(String name, Device parent) {
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "device name must not be blank: '" + name + "'");
        }
        this.name = name;
        this.parent = parent;
        this.devres = new Devres(name);
    }

    /** The device's name on its bus ({@code dev_name}): a BDF for PCI, {@code module.dev.id} for auxiliary. */
    public final String name() {
        return name;
    }

    /** The parent device, if any ({@code dev->parent}). */
    public final Optional<Device> parent() {
        return Optional.ofNullable(parent);
    }

    /** The bus this device is on. */
    public abstract BusType bus();

    /** Whether this device matches one row of a driver's ID table. */
    public abstract boolean matches(MatchEntry entry);

    /**
     * Whether the device may issue memory transactions: for PCI the Bus Master Enable bit of the command register
     * ({@code pci_set_master}); devices of other buses always may.
     */
    public boolean busMasterEnabled() {
        return true;
    }

    /**
     * How many address bits the device's hardware drives in the memory requests it masters: a hardware property of
     * the device, not the kernel's DMA mask ({@code Documentation/core-api/dma-api-howto.rst}, "DMA addressing
     * capabilities": the driver tells the kernel what the device can address with {@code dma_set_mask}, and only the
     * DMA API honours that mask). A request whose address does not fit is never put on the bus. 64 unless the bus or
     * the device's model says less.
     */
    public int dmaAddressBits() {
        return 64;
    }

    /** Resources released after the current binding ends. */
    public final Devres devres() {
        return devres;
    }

    /** The driver bound to this device, if any. */
    public final Optional<Driver> driver() {
        return Optional.ofNullable(driver);
    }

    /**
     * The only driver that may bind to this device ({@code driver_override} in
     * {@code Documentation/ABI/testing/sysfs-bus-pci}), set through {@link DeviceCore#setDriverOverride}; empty
     * when any driver whose ID table matches may.
     */
    public final Optional<String> driverOverride() {
        return Optional.ofNullable(driverOverride);
    }

    /** Whether the device is on its bus (added and not yet removed). */
    public final boolean isPresent() {
        return present;
    }

    /**
     * Tells {@code listener} when the device leaves its bus ({@code device_del}'s
     * {@code BUS_NOTIFY_REMOVED_DEVICE}), after its driver was unbound and it stopped being present: how whatever
     * still refers to the device (a user mapping of its BARs) learns that it is gone for good. A listener that
     * throws is logged and the others are still told.
     *
     * @return what stops the telling
     * @throws ErrnoException {@code EINVAL} for a null listener
     */
    public final Runnable addRemoveListener(Runnable listener) {
        if (listener == null) {
            throw new ErrnoException(Errno.EINVAL, name + ": a remove listener is null");
        }
        removeListeners.add(listener);
        return () -> removeListeners.remove(listener);
    }

    /** Devices created below this one, e.g. auxiliary devices its driver added. */
    public final List<Device> children() {
        return List.copyOf(children);
    }

    /**
     * The DMA API for this device ({@code dma_map_*(dev, ...)}). Auxiliary devices use their parent's, as
     * functions of one physical device share its requester ID.
     *
     * @throws ErrnoException {@code ENODEV} if the device has no DMA capability or left its bus
     */
    public DmaApi dma() {
        DmaApi d = dma;
        if (d == null) {
            if (parent != null) {
                return parent.dma();
            }
            throw new ErrnoException(Errno.ENODEV, name + " has no DMA API (not DMA capable or not on a bus)");
        }
        return d;
    }

    @Override
    public String toString() {
        return bus().name().toLowerCase() + ":" + name;
    }

    /**
     * Reports an uncorrectable error to the bound driver ({@code report_error_detected} in
     * {@code drivers/pci/pcie/err.c}): its {@link BoundDevice#errorDetected} answer, or {@link BoundDevice.ErsResult#NONE}
     * when no driver is bound.
     *
     * @throws ErrnoException {@code EINVAL} for a null state
     */
    public final BoundDevice.ErsResult errorDetected(BoundDevice.ChannelState state) {
        ErrnoException.requireNonNull(state, "channel state");
        BoundDevice b = binding;
        return b == null ? BoundDevice.ErsResult.NONE : b.errorDetected(state);
    }

    /** Tells the bound driver that recovery is over ({@code report_resume}); nothing when no driver is bound. */
    public final void resume() {
        BoundDevice b = binding;
        if (b != null) {
            b.resume();
        }
    }

    // state kept by DeviceCore

    final BoundDevice binding() {
        return binding;
    }

    final void bindState(Driver d, BoundDevice b) {
        this.driver = d;
        this.binding = b;
    }

    final void setDriverOverride(String name) {
        this.driverOverride = name;
    }

    final void setPresent(boolean p) {
        this.present = p;
    }

    final void setDma(DmaApi api) {
        this.dma = api;
    }

    final List<Runnable> removeListeners() {
        return removeListeners;
    }

    final void addChild(Device child) {
        children.add(Objects.requireNonNull(child));
    }

    final void removeChild(Device child) {
        children.remove(child);
    }
}
