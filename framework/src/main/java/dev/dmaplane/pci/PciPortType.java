package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * The device/port type in the PCI Express Capabilities register ({@code PCI_EXP_FLAGS_TYPE}, the
 * {@code PCI_EXP_TYPE_*} values of {@code include/uapi/linux/pci_regs.h}).
 */
public enum PciPortType {
    /** {@code PCI_EXP_TYPE_ENDPOINT}: PCI Express endpoint. */
    ENDPOINT(0x0, "Endpoint"),
    /** {@code PCI_EXP_TYPE_LEG_END}: legacy endpoint. */
    LEGACY_ENDPOINT(0x1, "Legacy Endpoint"),
    /** {@code PCI_EXP_TYPE_ROOT_PORT}: root port of a root complex. */
    ROOT_PORT(0x4, "Root Port"),
    /** {@code PCI_EXP_TYPE_UPSTREAM}: upstream port of a switch. */
    UPSTREAM(0x5, "Upstream Port"),
    /** {@code PCI_EXP_TYPE_DOWNSTREAM}: downstream port of a switch. */
    DOWNSTREAM(0x6, "Downstream Port"),
    /** {@code PCI_EXP_TYPE_PCI_BRIDGE}: PCIe to PCI/PCI-X bridge. */
    PCI_BRIDGE(0x7, "PCI-Express to PCI/PCI-X Bridge"),
    /** {@code PCI_EXP_TYPE_PCIE_BRIDGE}: PCI/PCI-X to PCIe bridge. */
    PCIE_BRIDGE(0x8, "PCI/PCI-X to PCI-Express Bridge"),
    /** {@code PCI_EXP_TYPE_RC_END}: root complex integrated endpoint. */
    RC_END(0x9, "Root Complex Integrated Endpoint"),
    /** {@code PCI_EXP_TYPE_RC_EC}: root complex event collector. */
    RC_EC(0xa, "Root Complex Event Collector");

    private final int value;
    private final String label;

    PciPortType(int value, String label) {
        this.value = value;
        this.label = label;
    }

    /** The 4-bit value in bits 7:4 of the PCI Express Capabilities register. */
    public int value() {
        return value;
    }

    /** How {@code lspci -vv} names this type after "Express (v2)". */
    public String label() {
        return label;
    }

    /** Whether functions of this type have a type 1 (bridge) header and a secondary bus. */
    public boolean isBridge() {
        return switch (this) {
            case ROOT_PORT, UPSTREAM, DOWNSTREAM, PCI_BRIDGE, PCIE_BRIDGE -> true;
            default -> false;
        };
    }

    /** Whether this is a port with a link below it that carries only device 0 (the kernel's {@code pcie_downstream_port}). */
    public boolean isDownstreamPort() {
        return this == ROOT_PORT || this == DOWNSTREAM || this == PCIE_BRIDGE;
    }

    /**
     * The type with register value {@code value}.
     *
     * @throws ErrnoException {@code EINVAL} for a value the spec reserves
     */
    public static PciPortType of(int value) {
        for (PciPortType t : values()) {
            if (t.value == value) {
                return t;
            }
        }
        throw new ErrnoException(Errno.EINVAL, "reserved PCIe device/port type 0x" + Integer.toHexString(value));
    }
}
