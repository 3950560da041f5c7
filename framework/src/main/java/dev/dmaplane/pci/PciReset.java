package dev.dmaplane.pci;

/** The resets a PCI function's hardware can see ({@code pci_reset_function}'s methods, PCIe Base Spec 6.6). */
public enum PciReset {
    /** Function Level Reset: Initiate FLR written in the function's Device Control register ({@code pcie_flr}). */
    FLR,
    /** Secondary Bus Reset of the bridge above: every function below resets ({@code pci_reset_secondary_bus}). */
    BUS
}
