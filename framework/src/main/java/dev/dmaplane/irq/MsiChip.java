package dev.dmaplane.irq;

import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.Msi;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * The function's interrupt registers as {@code drivers/pci/msi/msi.c} programs them for one allocation: the MSI or
 * MSI-X capability brought up ({@code msi_capability_init}, {@code msix_capability_init}) and shut down, a vector
 * masked or unmasked ({@code pci_msi_mask}, {@code pci_msix_mask}), and INTx disabled while messages are on
 * ({@code pci_intx}).
 */
final class MsiChip {
    private final PciFunction fn;
    private final IrqVectors.Type type;
    private final Msix msix;
    private final Msi msi;
    private final Bar.Mmio bar;
    /** The capability's Message Control register, or the Command register for INTx. */
    private final int control;
    private final int count;

    MsiChip(PciFunction fn, IrqVectors.Type type, int count) {
        this.fn = fn;
        this.type = type;
        this.count = count;
        this.msix = type == IrqVectors.Type.MSIX ? fn.msix().orElseThrow() : null;
        this.msi = type == IrqVectors.Type.MSI ? fn.msi().orElseThrow() : null;
        this.bar = msix == null ? null : fn.bar(msix.bar()).orElseThrow().mmio();
        this.control = switch (type) {
            case MSIX -> fn.configSpace().findCapability(CAP_ID_MSIX).orElseThrow() + MSIX_FLAGS;
            case MSI -> msi.capability() + MSI_FLAGS;
            case INTX -> COMMAND;
        };
    }

    /** Brings the allocation's interrupt type up: MSI-X or MSI programmed and enabled, or INTx enabled. */
    void startup() {
        switch (type) {
            case MSIX -> programMsix();
            case MSI -> programMsi();
            case INTX -> setInterruptDisable(false);
        }
    }

    /**
     * {@code pci_free_irq_vectors}' register side: MSI-X or MSI Enable cleared and INTx allowed again; for INTx
     * nothing, the Command register stays as the allocation left it.
     */
    void shutdown() {
        if (type == IrqVectors.Type.INTX) {
            return;
        }
        ConfigSpace cs = fn.configSpace();
        int enable = type == IrqVectors.Type.MSIX ? MSIX_FLAGS_ENABLE : MSI_FLAGS_ENABLE;
        cs.write(control, 2, cs.read(control, 2) & ~enable);
        setInterruptDisable(false);
    }

    /**
     * {@code msi_capability_init}: disabled, every vector masked if it can be, the address and base data written,
     * Multiple Message Enable set to the count rounded up to a power of two, INTx disabled, then enabled.
     */
    private void programMsi() {
        ConfigSpace cs = fn.configSpace();
        cs.write(control, 2, cs.read(control, 2) & ~MSI_FLAGS_ENABLE);
        if (msi.perVectorMask()) {
            cs.write(msi.maskOffset(), 4, msi.vectors() == 32 ? -1 : (1 << msi.vectors()) - 1);
        }
        cs.write(msi.capability() + MSI_ADDRESS_LO, 4, (int) IrqVectors.MSI_ADDRESS);
        if (msi.is64Bit()) {
            cs.write(msi.capability() + MSI_ADDRESS_HI, 4, (int) (IrqVectors.MSI_ADDRESS >>> 32));
        }
        cs.write(msi.dataOffset(), 2, 0);
        int mme = 32 - Integer.numberOfLeadingZeros(count - 1);
        cs.write(control, 2, (cs.read(control, 2) & ~MSI_FLAGS_QSIZE) | (mme << 4));
        setInterruptDisable(true);
        cs.write(control, 2, cs.read(control, 2) | MSI_FLAGS_ENABLE);
    }

    /** {@code msix_capability_init}: every entry masked, the allocated ones given their message, INTx off, enabled. */
    private void programMsix() {
        fn.configSpace().write(control, 2, MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL);
        for (int v = 0; v < msix.vectors(); v++) {
            mask(v, true);
        }
        for (int v = 0; v < count; v++) {
            long entry = msix.tableOffset() + (long) v * MSIX_ENTRY_SIZE;
            bar.write(entry + MSIX_ENTRY_LOWER_ADDR, 4, IrqVectors.MSI_ADDRESS);
            bar.write(entry + MSIX_ENTRY_UPPER_ADDR, 4, 0);
            bar.write(entry + MSIX_ENTRY_DATA, 4, v);
        }
        setInterruptDisable(true);
        fn.configSpace().write(control, 2, MSIX_FLAGS_ENABLE);
    }

    /** {@code pci_intx}: Command Interrupt Disable set or cleared. */
    private void setInterruptDisable(boolean disable) {
        ConfigSpace cs = fn.configSpace();
        synchronized (cs) {
            int cmd = cs.command();
            cs.write(COMMAND, 2, disable ? cmd | COMMAND_INTX_DISABLE : cmd & ~COMMAND_INTX_DISABLE);
        }
    }

    /** Masks or unmasks {@code vector} where the type can: an MSI-X entry, an MSI Mask bit; INTx here cannot. */
    void mask(int vector, boolean masked) {
        if (msix != null) {
            bar.write(msix.tableOffset() + (long) vector * MSIX_ENTRY_SIZE + MSIX_ENTRY_VECTOR_CTRL, 4,
                    masked ? MSIX_ENTRY_CTRL_MASKBIT : 0);
        } else if (msi != null && msi.perVectorMask()) {
            ConfigSpace cs = fn.configSpace();
            synchronized (cs) {
                int bits = cs.read(msi.maskOffset(), 4);
                cs.write(msi.maskOffset(), 4, masked ? bits | (1 << vector) : bits & ~(1 << vector));
            }
        }
    }
}
