package dev.dmaplane.pci;

import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

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
    /** Why the hardware does not answer, or null while it does. */
    private volatile String absence;

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
    }

    /**
     * New hardware in the slot, in the state firmware left the function in at boot (BARs at their addresses, memory
     * decoding on, bus mastering, MSI and MSI-X off), with every MSI-X vector masked.
     */
    void powerOn() {
        config.restoreFirmwareState();
        config.setPresent(true);
        absence = null;
        if (msix != null) {
            msix.reset();
        }
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
