package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Msix.Outcome;
import dev.dmaplane.pci.TopologyLoader.Format;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.pci.Machines.*;
import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The MSI capability as PCI Local Bus Spec 6.8.1 (PCI Express Base Spec 7.7.1) and the {@code PCI_MSI_*} registers of
 * {@code include/uapi/linux/pci_regs.h} describe it: Message Control, Message Address, Message Data, Mask and Pending
 * Bits, laid out by {@link ConfigSpace.Builder#msi} and the machine file's {@code msi:} section, and what the device's
 * {@link Msi#raise} does with them.
 */
class MsiTest {
    private static final long ADDR = 0xFEE0_1000L;

    private record Msg(int vector, long address, int data) {
    }

    private final List<Msg> got = new ArrayList<>();
    private final Msix.Sink sink = (v, a, d) -> got.add(new Msg(v, a, d));
    private PciTopology t;

    @AfterEach
    void close() {
        if (t != null) {
            t.close();
        }
    }

    private PciFunction load(String msi) {
        t = TopologyLoader.load(rootPortWith("", endpoint("01:00.0", msi)), Format.YAML);
        return t.function("01:00.0");
    }

    /** Programs address, data and Multiple Message Enable as {@code msi_capability_init} does, then enables. */
    private static void enable(PciFunction fn, int data, int log2Vectors) {
        Msi msi = fn.msi().orElseThrow();
        ConfigSpace cs = fn.configSpace();
        int cap = msi.capability();
        cs.write(cap + MSI_ADDRESS_LO, 4, (int) ADDR);
        if (msi.is64Bit()) {
            cs.write(cap + MSI_ADDRESS_HI, 4, 0);
        }
        cs.write(msi.dataOffset(), 2, data);
        cs.write(cap + MSI_FLAGS, 2, (log2Vectors << 4) | MSI_FLAGS_ENABLE);
        fn.setMaster(true);
    }

    /** Message Control reports the capable count, 64-bit and masking as built (PCI Local Bus Spec 6.8.1.3). */
    @Test
    void messageControlReportsWhatTheBuilderLaidOut() {
        ConfigSpace cs = ConfigSpace.builder(0x1da0, 2, 0x020000).msi(8, true, true).build();
        int cap = cs.findCapability(CAP_ID_MSI).orElseThrow();
        int ctl = cs.read(cap + MSI_FLAGS, 2);
        assertEquals(3 << 1, ctl & MSI_FLAGS_QMASK, "Multiple Message Capable = log2(8)");
        assertEquals(MSI_FLAGS_64BIT | MSI_FLAGS_MASKBIT, ctl & (MSI_FLAGS_64BIT | MSI_FLAGS_MASKBIT));
        assertEquals(0, ctl & (MSI_FLAGS_ENABLE | MSI_FLAGS_QSIZE), "disabled, one message allotted, at reset");
        cs.write(cap + MSI_FLAGS, 2, 0xFFFF);
        assertEquals(MSI_FLAGS_ENABLE | MSI_FLAGS_QSIZE, cs.read(cap + MSI_FLAGS, 2) & ~(MSI_FLAGS_QMASK
                | MSI_FLAGS_64BIT | MSI_FLAGS_MASKBIT), "only Enable and Multiple Message Enable are writable");
        cs.write(cap + MSI_ADDRESS_LO, 4, -1);
        assertEquals(MSI_ADDRESS_LO_MASK, cs.read(cap + MSI_ADDRESS_LO, 4), "address bits 1:0 are zero");
        cs.write(cap + MSI_MASK_64, 4, -1);
        assertEquals(0xFF, cs.read(cap + MSI_MASK_64, 4), "one Mask bit per implemented vector");
        cs.write(cap + MSI_PENDING_64, 4, -1);
        assertEquals(0, cs.read(cap + MSI_PENDING_64, 4), "Pending Bits are read-only to software");
    }

    /** A 32-bit capability without masking puts Message Data at 0x08 and has no Mask or Pending Bits (6.8.1). */
    @Test
    void aThirtyTwoBitCapabilityHasDataAtEightAndNoMaskBits() {
        PciFunction fn = load("msi: { vectors: 1, 64bit: false }");
        Msi msi = fn.msi().orElseThrow();
        assertFalse(msi.is64Bit());
        assertFalse(msi.perVectorMask());
        assertEquals(msi.capability() + MSI_DATA_32, msi.dataOffset());
        assertEquals(Errno.EOPNOTSUPP, assertThrows(ErrnoException.class, msi::maskOffset).errno());
        assertTrue(Lspci.verbose(fn, 0).contains("MSI: Enable- Count=1/1 Maskable- 64bit-"), Lspci.verbose(fn, 0));
    }

    /** Multiple Message Capable is a log2: the count must be a power of two in 1..32 (PCI Local Bus Spec 6.8.1.3). */
    @Test
    void aVectorCountThatIsNotAPowerOfTwoUpToThirtyTwoIsEinval() {
        for (int bad : new int[]{0, 3, 64, -1}) {
            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> ConfigSpace.builder(0x1da0, 2, 0x020000).msi(bad, false, false).build());
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains("MSI vector count " + bad), e.getMessage());
        }
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> TopologyLoader.load(rootPortWith("", endpoint("01:00.0", "msi: { vectors: 6 }")), Format.YAML));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("children[0].msi.vectors: '6'"), e.getMessage());
        e = assertThrows(ErrnoException.class, () -> TopologyLoader.load(
                rootPortWith("", endpoint("01:00.0", "msi: { vectors: 4, maskable: true }")), Format.YAML));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("maskable"), e.getMessage());
    }

    /** The message is Message Address and Message Data with the vector in the low MME bits (6.8.1.6). */
    @Test
    void aRaiseSendsTheDataWithTheVectorInTheLowBitsMultipleMessageEnableAllots() {
        PciFunction fn = load("msi: { vectors: 8 }");
        Msi msi = fn.msi().orElseThrow();
        msi.attach(sink);
        enable(fn, 0x4123, 2);
        assertEquals(4, msi.enabledVectors());
        assertEquals(Outcome.DELIVERED, msi.raise(0));
        assertEquals(Outcome.DELIVERED, msi.raise(3));
        assertEquals(List.of(new Msg(0, ADDR, 0x4120), new Msg(3, ADDR, 0x4123)), got);
        assertEquals(Outcome.DROPPED, msi.raise(4), "vector 4 is implemented but not allotted");
        assertEquals(2, msi.delivered());
        assertEquals(1, msi.dropped());
        ErrnoException e = assertThrows(ErrnoException.class, () -> msi.raise(8));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("MSI vector 8"), e.getMessage());
    }

    /** Without MSI Enable or Bus Master Enable the function sends nothing (6.8.1.3, PCI Local Bus Spec 6.2.2). */
    @Test
    void aRaiseIsDroppedWithoutMsiEnableOrBusMaster() {
        PciFunction fn = load("msi: { vectors: 1 }");
        Msi msi = fn.msi().orElseThrow();
        msi.attach(sink);
        assertEquals(Outcome.DROPPED, msi.raise(0), "MSI Enable clear");
        enable(fn, 0x20, 0);
        fn.setMaster(false);
        assertEquals(Outcome.DROPPED, msi.raise(0), "Bus Master Enable clear");
        fn.setMaster(true);
        assertEquals(Outcome.DELIVERED, msi.raise(0));
        assertEquals(List.of(new Msg(0, ADDR, 0x20)), got);
        assertEquals(2, msi.dropped());
    }

    /** A masked vector sets its Pending bit; clearing the Mask bit sends it and clears the bit (6.8.1.8/9). */
    @Test
    void aMaskedVectorIsPendingAndSentWhenUnmasked() {
        PciFunction fn = load("msi: { vectors: 4, per-vector-mask: true }");
        Msi msi = fn.msi().orElseThrow();
        msi.attach(sink);
        enable(fn, 0x40, 2);
        fn.configSpace().write(msi.maskOffset(), 4, 0b0100);
        assertEquals(Outcome.PENDING, msi.raise(2));
        assertTrue(msi.pending(2));
        assertTrue(got.isEmpty());
        assertEquals(Outcome.DELIVERED, msi.raise(1), "other vectors are not masked");
        fn.configSpace().write(msi.maskOffset(), 4, 0);
        assertFalse(msi.pending(2));
        assertEquals(List.of(new Msg(1, ADDR, 0x41), new Msg(2, ADDR, 0x42)), got);
    }

    /**
     * MSI and MSI-X enabled at once is undefined (PCI Local Bus Spec 6.8: "system software is prohibited from enabling
     * both"); the model lets MSI-X win, so an MSI raise is dropped while MSI-X Enable is set.
     */
    @Test
    void msiIsDroppedWhileMsixIsEnabledToo() {
        PciFunction fn = load("msi: { vectors: 1 }\nmsix: { vectors: 4 }");
        Msi msi = fn.msi().orElseThrow();
        msi.attach(sink);
        enable(fn, 0x20, 0);
        int msixCtl = fn.configSpace().findCapability(CAP_ID_MSIX).orElseThrow() + MSIX_FLAGS;
        fn.configSpace().write(msixCtl, 2, MSIX_FLAGS_ENABLE);
        assertEquals(Outcome.DROPPED, msi.raise(0));
        fn.configSpace().write(msixCtl, 2, 0);
        assertEquals(Outcome.DELIVERED, msi.raise(0));
    }

    /** Without an attached interrupt controller a raise is dropped; a second sink is EBUSY (as for MSI-X). */
    @Test
    void sinksAttachOnceAndARaiseWithoutOneIsDropped() {
        PciFunction fn = load("msi: { vectors: 1 }");
        Msi msi = fn.msi().orElseThrow();
        enable(fn, 0, 0);
        assertEquals(Outcome.DROPPED, msi.raise(0));
        msi.attach(sink);
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> msi.attach((v, a, d) -> { })).errno());
        msi.detach(sink);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> msi.detach(sink)).errno());
        assertTrue(msi.sink().isEmpty());
    }
}
