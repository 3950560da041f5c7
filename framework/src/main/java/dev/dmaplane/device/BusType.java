package dev.dmaplane.device;

/** The bus a device sits on ({@code struct bus_type}). */
public enum BusType {
    /** A PCI function ({@code pci_bus_type}). */
    PCI,
    /** A child a driver created on the auxiliary bus ({@code auxiliary_bus_type}). */
    AUXILIARY,
    /** A device with no bus and no hardware behind it ({@code faux_bus_type}, drivers/base/faux.c). */
    FAUX
}
