package dev.dmaplane.pci;

import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * One PCI function ({@code struct pci_dev}): its BDF, IDs and config space, BARs, the bus it sits on and, for
 * a bridge, the bus below it. Its device name is the BDF and its parent device the bridge above it.
 */
public final class PciFunction extends Device {
    private final Bdf bdf;
    private final PciBus bus;
    private final ConfigSpace config;
    private final List<Bar> bars;
    private final String model;
    private final Map<String, String> properties;
    private final Msix msix;
    private final Msi msi;
    private final Intx intx;
    private volatile PciBus subordinate;
    private final List<Consumer<PciReset>> resetListeners = new CopyOnWriteArrayList<>();
    private final List<Consumer<String>> zapListeners = new CopyOnWriteArrayList<>();
    /** Why the hardware does not answer, or null while it does. */
    private volatile String absence;
    /** The address bits the hardware in the slot drives; what its model declared, 64 for a PCIe function otherwise. */
    private volatile int dmaAddressBits = 64;

    PciFunction(Bdf bdf, PciBus bus, ConfigSpace config, List<Bar> bars, String model, Map<String, String> properties) {
        super(bdf.toString(), bus.self().orElse(null));
        this.bdf = bdf;
        this.bus = bus;
        this.config = Objects.requireNonNull(config, "config");
        this.bars = bars.stream().sorted(Comparator.comparingInt(Bar::index)).toList();
        this.model = model;
        this.properties = Map.copyOf(properties);
        this.msix = Msix.of(bdf + " MSI-X", config).orElse(null);
        if (msix != null) {
            bar(msix.bar()).orElseThrow(() -> new ErrnoException(Errno.EINVAL,
                    bdf + ": MSI-X BAR " + msix.bar() + " is not a BAR of this function")).mmio().claim(msix);
        }
        this.msi = Msi.of(bdf + " MSI", config).orElse(null);
        this.intx = Intx.of(bdf + " INTx", config).orElse(null);
        config.addWriteListener(this::configWritten);
        config.owner(this);
    }

    /** Watches the two reset triggers: Initiate FLR in Device Control, Secondary Bus Reset in Bridge Control. */
    private void configWritten(int offset, int size) {
        OptionalInt exp = config.findCapability(PciRegs.CAP_ID_EXP);
        int devctl = exp.isPresent() ? exp.getAsInt() + PciRegs.EXP_DEVCTL : -1;
        if (devctl >= 0 && offset <= devctl + 1 && offset + size > devctl + 1
                && (config.read(devctl, 2) & PciRegs.EXP_DEVCTL_BCR_FLR) != 0) {
            functionLevelReset();
        }
        if (isBridge() && offset <= PciRegs.BRIDGE_CONTROL && offset + size > PciRegs.BRIDGE_CONTROL
                && (config.read(PciRegs.BRIDGE_CONTROL, 2) & PciRegs.BRIDGE_CTL_BUS_RESET) != 0) {
            subordinate().ifPresent(b -> resetBelow(b));
        }
    }

    /** Resets every function below the bus {@code b}, depth first, as a secondary bus reset reaches them all. */
    private static void resetBelow(PciBus b) {
        for (PciFunction f : b.devices()) {
            f.subordinate().ifPresent(PciFunction::resetBelow);
            f.hardwareReset(PciReset.BUS);
        }
    }

    /** Initiate FLR was written: it reads back as zero, and the function resets. */
    private void functionLevelReset() {
        hardwareReset(PciReset.FLR);
    }

    /** The function's hardware resets: registers to power-on values, MSI-X table masked, the model told. */
    private void hardwareReset(PciReset kind) {
        if (absence != null) {
            return;
        }
        if (intx != null) {
            intx.deassertLine();
        }
        config.resetToPowerOn();
        if (msix != null) {
            msix.reset();
        }
        for (Consumer<PciReset> l : resetListeners) {
            l.accept(kind);
        }
    }

    /**
     * Tells {@code listener} of every reset of this function's hardware (FLR, secondary bus reset above it), after
     * its registers were reset: how a device model resets its own state.
     *
     * @return what stops the telling
     */
    public Runnable addResetListener(Consumer<PciReset> listener) {
        if (listener == null) {
            throw new ErrnoException(Errno.EINVAL, bdf + ": a reset listener is null");
        }
        resetListeners.add(listener);
        return () -> resetListeners.remove(listener);
    }

    /**
     * Drops every CPU mapping's page-table entries of this function's BARs ({@code unmap_mapping_range}, what
     * {@code vfio_pci_zap_bars} does before the user turns memory decoding off): interval notifiers see CLEAR and the
     * next access faults the page in again if the function decodes memory then, else it is {@code SIGBUS}. The
     * mappings stay. Nothing happens to the hardware.
     *
     * @param reason why, for the trace
     * @throws ErrnoException {@code EINVAL} for a null reason
     */
    public void zapBarMappings(String reason) {
        ErrnoException.requireNonNull(reason, "zap reason");
        for (Consumer<String> l : zapListeners) {
            l.accept(reason);
        }
    }

    /**
     * Tells {@code listener} of every {@link #zapBarMappings}: how a mapping of a BAR learns to drop its entries.
     *
     * @return what stops the telling
     */
    public Runnable addZapListener(Consumer<String> listener) {
        ErrnoException.requireNonNull(listener, "zap listener");
        zapListeners.add(listener);
        return () -> zapListeners.remove(listener);
    }

    /** Whether the function advertises Function Level Reset in its Device Capabilities ({@code pcie_has_flr}). */
    public boolean hasFlr() {
        OptionalInt exp = config.findCapability(PciRegs.CAP_ID_EXP);
        return exp.isPresent() && (config.read(exp.getAsInt() + PciRegs.EXP_DEVCAP, 4) & PciRegs.EXP_DEVCAP_FLR) != 0;
    }

    /**
     * Initiates a Function Level Reset ({@code pcie_flr}): every register returns to its power-on value (BARs
     * unassigned, decoding, bus mastering, MSI and MSI-X off) and the device model resets. The caller restores what
     * it needs, or uses {@link #resetFunction()}.
     *
     * @throws ErrnoException {@code ENOTTY} if the function cannot FLR ({@code pcie_reset_flr}), {@code ENODEV} if
     *                        its hardware is absent
     */
    public void flr() {
        requireHardware("FLR");
        if (!hasFlr()) {
            throw new ErrnoException(Errno.ENOTTY, bdf + " does not advertise Function Level Reset (DevCap FLReset-)");
        }
        int devctl = config.findCapability(PciRegs.CAP_ID_EXP).getAsInt() + PciRegs.EXP_DEVCTL;
        config.write(devctl, 2, config.read(devctl, 2) | PciRegs.EXP_DEVCTL_BCR_FLR);
    }

    /**
     * Resets the function and keeps its configuration ({@code pci_reset_function}): saves its config registers and
     * MSI-X table, FLRs, and restores them, so a driver finds its BARs, bus mastering and interrupt vectors as before
     * while the device itself starts afresh.
     *
     * @throws ErrnoException as {@link #flr()}
     */
    public void resetFunction() {
        requireHardware("reset");
        if (!hasFlr()) {
            throw new ErrnoException(Errno.ENOTTY, bdf + " does not advertise Function Level Reset (DevCap FLReset-)");
        }
        byte[] saved = config.save();
        int[] table = msix == null ? null : msix.saveTable();
        flr();
        config.restore(saved);
        if (table != null) {
            msix.restoreTable(table);
        }
    }

    /**
     * Pulses Secondary Bus Reset on this bridge ({@code pci_reset_secondary_bus}): every function below resets.
     *
     * @throws ErrnoException {@code EINVAL} if this is not a bridge
     */
    public void resetSecondaryBus() {
        if (!isBridge()) {
            throw new ErrnoException(Errno.EINVAL, bdf + " is not a bridge; it has no secondary bus to reset");
        }
        int ctl = config.read(PciRegs.BRIDGE_CONTROL, 2);
        config.write(PciRegs.BRIDGE_CONTROL, 2, ctl | PciRegs.BRIDGE_CTL_BUS_RESET);
        config.write(PciRegs.BRIDGE_CONTROL, 2, ctl & ~PciRegs.BRIDGE_CTL_BUS_RESET);
    }

    /**
     * Resets this function's bus, keeping every function's configuration ({@code pci_reset_bus}: the functions
     * below the bridge are saved, the bridge pulses Secondary Bus Reset, and they are restored, as
     * {@code pci_bus_save_and_disable_locked} and {@code pci_bus_restore_locked} do): each function below resets
     * (its model sees {@link PciReset#BUS}, its BAR mappings are zapped) and finds its BARs, command register and
     * MSI-X table as before.
     *
     * @return the functions that were reset, bus by bus from this one down
     * @throws ErrnoException {@code ENOTTY} on a root bus, which no bridge can reset ({@code pci_probe_reset_bus})
     */
    public List<PciFunction> resetBus() {
        PciFunction bridge = bus.self().orElseThrow(() -> new ErrnoException(Errno.ENOTTY, bdf
                + " is on root bus " + bus + ": no bridge above it can reset the bus"));
        List<PciFunction> below = new ArrayList<>();
        collectBelow(bus, below);
        List<byte[]> configs = new ArrayList<>();
        List<int[]> tables = new ArrayList<>();
        for (PciFunction f : below) {
            configs.add(f.absence == null ? f.config.save() : null);
            tables.add(f.absence == null && f.msix != null ? f.msix.saveTable() : null);
        }
        bridge.resetSecondaryBus();
        for (int i = 0; i < below.size(); i++) {
            PciFunction f = below.get(i);
            if (configs.get(i) != null && f.absence == null) {
                f.config.restore(configs.get(i));
                if (tables.get(i) != null) {
                    f.msix.restoreTable(tables.get(i));
                }
            }
        }
        return below;
    }

    private static void collectBelow(PciBus b, List<PciFunction> out) {
        for (PciFunction f : b.devices()) {
            out.add(f);
        }
        for (PciBus child : b.children()) {
            collectBelow(child, out);
        }
    }

    private void requireHardware(String what) {
        if (absence != null) {
            throw new ErrnoException(Errno.ENODEV, bdf + ": cannot " + what + ": " + absence);
        }
    }

    void setSubordinate(PciBus child) {
        if (!isBridge()) {
            throw new ErrnoException(Errno.EINVAL, bdf + " has a type 0 header and cannot have a secondary bus");
        }
        this.subordinate = child;
    }

    public Bdf bdf() {
        return bdf;
    }

    /** Always {@link BusType#PCI}. */
    @Override
    public BusType bus() {
        return BusType.PCI;
    }

    /** The bus this function sits on ({@code pdev->bus}). */
    public PciBus pciBus() {
        return bus;
    }

    /** The bus below this bridge ({@code pdev->subordinate}); empty for a non-bridge. */
    public Optional<PciBus> subordinate() {
        return Optional.ofNullable(subordinate);
    }

    /** The bridge this function sits below ({@code pci_upstream_bridge}); empty on a root bus. */
    public Optional<PciFunction> upstreamBridge() {
        return bus.self();
    }

    /** The function's config space; reads and writes go to the live registers. */
    public ConfigSpace configSpace() {
        return config;
    }

    public int vendorId() {
        return config.vendorId();
    }

    public int deviceId() {
        return config.deviceId();
    }

    public int subsystemVendorId() {
        return config.subsystemVendorId();
    }

    public int subsystemId() {
        return config.subsystemId();
    }

    /** The 24-bit class code ({@code pdev->class}). */
    public int classCode() {
        return config.classCode();
    }

    public int revision() {
        return config.revision();
    }

    /** The PCI Express device/port type; empty for a conventional PCI function ({@code pci_pcie_type}). */
    public Optional<PciPortType> portType() {
        return config.portType();
    }

    /** Whether the function has a PCI Express capability ({@code pci_is_pcie}). */
    public boolean isPcie() {
        return portType().isPresent();
    }

    /** Whether this function is a PCI-to-PCI bridge (type 1 header). */
    public boolean isBridge() {
        return config.isBridgeHeader();
    }

    /** Whether this function is part of a multi-function device ({@code pdev->multifunction}). */
    public boolean isMultifunction() {
        return config.isMultifunction();
    }

    /** The implemented BARs, by index. */
    public List<Bar> bars() {
        return bars;
    }

    /** BAR {@code index}, if implemented. */
    public Optional<Bar> bar(int index) {
        return bars.stream().filter(b -> b.index() == index).findFirst();
    }

    /** The MSI-X table, PBA and interrupt source ({@code pdev->msix_cap}); empty without an MSI-X capability. */
    public Optional<Msix> msix() {
        return Optional.ofNullable(msix);
    }

    /** The MSI capability and interrupt source ({@code pdev->msi_cap}); empty without an MSI capability. */
    public Optional<Msi> msi() {
        return Optional.ofNullable(msi);
    }

    /** The legacy INTx line ({@code pdev->pin}); empty when the Interrupt Pin register is 0. */
    public Optional<Intx> intx() {
        return Optional.ofNullable(intx);
    }

    /**
     * The device model signals interrupt {@code vector} in the mode the driver enabled, as a device does: an MSI-X
     * message if MSI-X Enable is set, else an MSI message if MSI Enable is set, else a pulse of the INTx line
     * (vector 0 only; a cause that stays until the driver clears it uses {@link Intx#assertLine} instead).
     *
     * @throws ErrnoException {@code EINVAL} for a vector the enabled mode does not have, or for INTx without an
     *                        Interrupt Pin
     */
    public Msix.Outcome signal(int vector) {
        if (msix != null && msix.enabled()) {
            return msix.raise(vector);
        }
        if (msi != null && msi.enabled()) {
            return msi.raise(vector);
        }
        if (intx == null) {
            throw new ErrnoException(Errno.EINVAL, bdf + ": vector " + vector
                    + " with MSI and MSI-X disabled needs INTx, and the Interrupt Pin is 0");
        }
        if (vector != 0) {
            throw new ErrnoException(Errno.EINVAL, bdf + ": vector " + vector
                    + " with MSI and MSI-X disabled; INTx has only vector 0");
        }
        return intx.pulse();
    }

    /** The ACS Control register; empty if the function has no ACS capability. */
    public Optional<Acs> acs() {
        return config.acsControl();
    }

    /** The ACS Capability register; empty if the function has no ACS capability. */
    public Optional<Acs> acsCapability() {
        return config.acsCapability();
    }

    /**
     * Whether this function enforces {@code flags}, judged as {@code pci_acs_enabled} in
     * {@code drivers/pci/pci.c} does (without device-specific quirks): conventional PCI functions and
     * PCIe-to-PCI bridges never isolate; root and downstream ports must enable every flag their ACS
     * capability implements; endpoints and upstream ports only matter when multi-function, and a
     * single-function one counts as enforcing everything.
     */
    public boolean acsEnabled(Acs flags) {
        Optional<PciPortType> type = portType();
        if (type.isEmpty()) {
            return false;
        }
        return switch (type.get()) {
            case PCI_BRIDGE, PCIE_BRIDGE, RC_EC -> false;
            case ROOT_PORT, DOWNSTREAM -> acsFlagsEnabled(flags);
            case ENDPOINT, UPSTREAM, LEGACY_ENDPOINT, RC_END -> !isMultifunction() || acsFlagsEnabled(flags);
        };
    }

    /**
     * {@code pci_acs_flags_enabled}: the ACS capability must exist; a flag the capability does not implement
     * counts as hard-wired on, except Egress Control.
     */
    private boolean acsFlagsEnabled(Acs flags) {
        Optional<Acs> cap = config.acsCapability();
        Optional<Acs> ctrl = config.acsControl();
        if (cap.isEmpty() || ctrl.isEmpty()) {
            return false;
        }
        int want = flags.bits() & (cap.get().bits() | Acs.EC);
        return (ctrl.get().bits() & want) == want;
    }

    /** The device model the machine file names for this function (e.g. {@code nvme}), if any. */
    public Optional<String> model() {
        return Optional.ofNullable(model);
    }

    /** The model's settings from the machine file. */
    public Map<String, String> properties() {
        return properties;
    }

    /**
     * A Downstream Port that reports it (Link Capabilities DLLLARC) sets Data Link Layer Link Active while a device
     * below answers and clears it when the last one leaves (PCIe Base Spec 7.5.3.8, what {@code pciehp} polls).
     */
    void updateLinkActive() {
        OptionalInt exp = config.findCapability(PciRegs.CAP_ID_EXP);
        if (subordinate == null || exp.isEmpty()
                || (config.read(exp.getAsInt() + PciRegs.EXP_LNKCAP, 4) & PciRegs.EXP_LNKCAP_DLLLARC) == 0) {
            return;
        }
        boolean active = subordinate.devices().stream().anyMatch(f -> f.absence().isEmpty());
        config.hardwareUpdate(exp.getAsInt() + PciRegs.EXP_LNKSTA, 2, PciRegs.EXP_LNKSTA_DLLLA, active);
    }

    /**
     * Why this function's hardware does not answer (its device model is not loaded, or left), or empty while it
     * does. An absent function reads all-ones in config space, decodes no BAR and masters no DMA, as an empty slot.
     */
    public Optional<String> absence() {
        return Optional.ofNullable(absence);
    }

    /** The hardware leaves the slot: config space and BARs stop answering ({@code pci_dev_is_disconnected}). */
    void powerOff(String why) {
        if (intx != null) {
            intx.deassertLine();
        }
        absence = Objects.requireNonNull(why, "why");
        config.setPresent(false);
        upstreamBridge().ifPresent(PciFunction::updateLinkActive);
    }

    /**
     * New hardware in the slot, in the state firmware left the function in at boot (BARs at their addresses, memory
     * decoding on, bus mastering, MSI and MSI-X off), with every MSI-X vector masked.
     */
    void powerOn() {
        config.restoreFirmwareState();
        config.setPresent(true);
        absence = null;
        upstreamBridge().ifPresent(PciFunction::updateLinkActive);
        if (msix != null) {
            msix.reset();
        }
    }

    /**
     * Moves the function to D0 or D3hot through its Power Management capability ({@code pci_set_power_state}). In
     * D3hot it decodes no BAR and issues no DMA or interrupt message; back in D0 it keeps its state (No_Soft_Reset).
     *
     * @param d3hot true for D3hot, false for D0
     * @throws ErrnoException {@code EIO} if the function has no Power Management capability, {@code ENODEV} if its
     *                        hardware is absent
     */
    public void setPowerState(boolean d3hot) {
        requireHardware("change power state");
        OptionalInt pm = config.findCapability(PciRegs.CAP_ID_PM);
        if (pm.isEmpty()) {
            throw new ErrnoException(Errno.EIO, bdf + " has no Power Management capability");
        }
        int ctrl = pm.getAsInt() + PciRegs.PM_CTRL;
        config.write(ctrl, 2, (config.read(ctrl, 2) & ~PciRegs.PM_CTRL_STATE_MASK) | (d3hot ? 3 : 0));
    }

    /**
     * The address bits the hardware in this slot drives in the requests it masters: what its device model declared
     * ({@link dev.dmaplane.hw.ModelContext#dmaAddressBits}), 64 when it declared nothing or the function has no model.
     */
    @Override
    public int dmaAddressBits() {
        return dmaAddressBits;
    }

    /** The hardware in the slot drives {@code bits} address bits (checked by {@link PciTopology#setDmaAddressBits}). */
    void setDmaAddressBits(int bits) {
        dmaAddressBits = bits;
    }

    /** Whether the function may master the bus (issue DMA). */
    public boolean busMasterEnabled() {
        return config.busMasterEnabled();
    }

    /** Sets or clears Bus Master Enable ({@code pci_set_master} / {@code pci_clear_master}). */
    public void setMaster(boolean enable) {
        updateCommand(PciRegs.COMMAND_MASTER, enable);
    }

    /** Sets or clears Memory Space Enable, as {@code pci_enable_device_mem} / {@code pci_disable_device} do. */
    public void setMemorySpace(boolean enable) {
        updateCommand(PciRegs.COMMAND_MEMORY, enable);
    }

    private void updateCommand(int bit, boolean on) {
        synchronized (config) {
            int cmd = config.command();
            config.write(PciRegs.COMMAND, 2, on ? cmd | bit : cmd & ~bit);
        }
    }

    /** Matches a {@link MatchEntry.Pci} row against this function's IDs and class ({@code pci_match_one_device}). */
    @Override
    public boolean matches(MatchEntry entry) {
        return entry instanceof MatchEntry.Pci p
                && p.matches(vendorId(), deviceId(), subsystemVendorId(), subsystemId(), classCode());
    }
}
