package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.impl.CopyEngineModel;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.OptionalLong;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.ID_VALUE;
import static dev.dmaplane.hw.copyengine.CopyEngineRegs.REG_ID;
import static dev.dmaplane.hw.copyengine.CopyEngineRegs.REG_RING_BASE;
import static dev.dmaplane.hw.copyengine.CopyEngineRegs.REG_STATUS;
import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * BAR mappings with the kernel's {@code VM_IO | VM_PFNMAP} rules: {@code vfio_pci_core_mmap}'s checks and
 * {@code vfio_pci_mmap_huge_fault} inserting pages on access while the function decodes memory
 * ({@code drivers/vfio/pci/vfio_pci_core.c}), {@code vmf_insert_pfn} / {@code remap_pfn_range} special entries that
 * hold no page ({@code mm/memory.c}), {@code check_vma_flags} in {@code mm/gup.c} refusing to pin them with
 * {@code EFAULT}, and {@code vfio_pci_zap_bars} zapping them on reset (re-faulted on the next access) and for good
 * when the device is removed.
 */
class BarMappingTest {
    private static final long PAGE = 4096;

    private final Machine machine = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.SMALL_GPU),
            TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
    private final DeviceModel copyEngine = new CopyEngineModel();
    private final PciFunction gpu;
    private final AddressSpace as = machine.newAddressSpace("bar-user");

    BarMappingTest() {
        machine.addModel(copyEngine);
        gpu = machine.pci().function("01:00.0");
    }

    @AfterEach
    void close() {
        as.close();
        machine.close();
    }

    private long load64(long va) {
        MemorySegment buf = MemorySegment.ofArray(new long[1]);
        as.read(va, buf);
        return buf.get(ValueLayout.JAVA_LONG, 0);
    }

    private void store64(long va, long value) {
        as.write(va, MemorySegment.ofArray(new long[]{value}));
    }

    private static void assertErrno(Errno errno, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
    }

    @Test
    void loadsAndStoresThroughARegisterBarReachTheDeviceModel() {
        Bar.Mmio regs = gpu.bar(0).orElseThrow().mmio();
        long va = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ | PROT_WRITE);

        assertEquals(ID_VALUE, load64(va + REG_ID), "the copy engine's ID register answers the load");
        store64(va + REG_RING_BASE, 0x1234_5000L);
        assertEquals(0x1234_5000L, regs.read(REG_RING_BASE, 8), "the store reached the register");
        long[] two = new long[2];
        as.read(va + REG_ID, MemorySegment.ofArray(two));
        assertArrayEquals(new long[]{ID_VALUE, regs.read(REG_STATUS, 8)}, two,
                "a 16-byte load is two aligned 8-byte register reads");

        Vma vma = as.findVma(va).orElseThrow();
        assertEquals(Set.of(VmaFlag.SHARED, VmaFlag.IO, VmaFlag.PFNMAP), vma.flags());
        assertEquals(new VmaBacking.PciBar(gpu, 0, 0), vma.backing());
        assertTrue(vma.toString().contains(gpu.bdf() + " BAR0"), vma.toString());
        assertEquals(OptionalLong.of(gpu.bar(0).orElseThrow().address() + REG_ID), as.physAddr(va),
                "pagemap shows the BAR's page");
        assertEquals(0, as.residentPages(), "a BAR page is no page of host memory");
    }

    @Test
    void loadsAndStoresThroughAMemoryBarReachItsMemoryAcrossPages() {
        Bar bar = gpu.bar(2).orElseThrow();
        long va = as.mmapBar(gpu, 2, 2 << 20, 4 * PAGE, PROT_READ | PROT_WRITE);
        byte[] data = new byte[2 * (int) PAGE];
        new Random(13).nextBytes(data);

        as.write(va + PAGE / 2, MemorySegment.ofArray(data));

        byte[] inBar = new byte[data.length];
        bar.memory().read((2 << 20) + PAGE / 2, MemorySegment.ofArray(inBar));
        assertArrayEquals(data, inBar);
        byte[] back = new byte[data.length];
        as.read(va + PAGE / 2, MemorySegment.ofArray(back));
        assertArrayEquals(data, back);
        assertEquals(OptionalLong.of(bar.address() + (2 << 20) + PAGE), as.physAddr(va + PAGE));
    }

    @Test
    void pinningABarMappingFailsWithEfaultAndPinsNothing() {
        long va = as.mmapBar(gpu, 2, 0, 2 * PAGE, PROT_READ | PROT_WRITE);
        load64(va);

        for (Set<PinFlags> flags : List.of(EnumSet.noneOf(PinFlags.class), EnumSet.of(PinFlags.WRITE),
                EnumSet.of(PinFlags.WRITE, PinFlags.LONGTERM))) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> as.pin(va, 2 * PAGE, flags));
            assertEquals(Errno.EFAULT, e.errno(), e.getMessage());
            assertTrue(e.getMessage().contains("VM_IO|VM_PFNMAP"), e.getMessage());
        }
        assertErrno(Errno.EFAULT, () -> as.faultRange(va, PAGE, false));
        assertErrno(Errno.EINVAL, () -> as.migrate(va));
        assertEquals(0, as.pinnedPages());
        assertEquals(0, as.residentPages());
    }

    @Test
    void aResetZapsTheMappingAndTheNextAccessFaultsItBackIn() {
        long va = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ | PROT_WRITE);
        List<InvalidateReason> seen = new CopyOnWriteArrayList<>();
        try (IntervalSubscription sub = as.registerNotifier(va, PAGE, (range, reason, seq) -> seen.add(reason))) {
            assertEquals(ID_VALUE, load64(va));

            gpu.resetFunction();

            assertEquals(List.of(InvalidateReason.CLEAR), seen, "unmap_mapping_range tells the notifiers");
            assertTrue(as.physAddr(va).isEmpty(), "the page is zapped");
            assertEquals(ID_VALUE, load64(va), "the BAR still decodes: the access faults the page back in");
            assertTrue(as.physAddr(va).isPresent());
            assertFalse(sub.readRetry(sub.readBegin()), "the invalidation is over");
        }
    }

    /** {@code vfio_pci_zap_bars} before the driver turns decoding off: the pages go, the mappings stay. */
    @Test
    void theDriverZapsTheMappingsAndAnAccessWhileDecodingIsOffIsSigbus() {
        long regs = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ | PROT_WRITE);
        long mem = as.mmapBar(gpu, 2, 0, PAGE, PROT_READ | PROT_WRITE);
        store64(mem, 0x1234);
        assertEquals(ID_VALUE, load64(regs));
        List<InvalidateReason> seen = new CopyOnWriteArrayList<>();
        try (IntervalSubscription sub = as.registerNotifier(regs, PAGE, (range, reason, seq) -> seen.add(reason))) {
            gpu.setMemorySpace(false);
            gpu.zapBarMappings("test: decoding off");

            assertEquals(List.of(InvalidateReason.CLEAR), seen, "unmap_mapping_range tells the notifiers");
            assertTrue(as.physAddr(regs).isEmpty() && as.physAddr(mem).isEmpty(), "both BARs' pages are zapped");
            assertErrno(Errno.EFAULT, () -> load64(regs));
            assertErrno(Errno.EFAULT, () -> store64(mem, 0x5678));
            gpu.setMemorySpace(true);
            assertEquals(ID_VALUE, load64(regs), "decoding again: the page faults back in");
            assertEquals(0x1234, load64(mem), "the failed store changed nothing");
        }
        assertErrno(Errno.EINVAL, () -> gpu.zapBarMappings(null));
    }

    @Test
    void afterAnFlrThatLeftDecodingOffAnAccessIsSigbusUntilMemoryIsEnabled() {
        long va = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ | PROT_WRITE);
        long bar0 = gpu.bar(0).orElseThrow().address();
        assertEquals(ID_VALUE, load64(va));

        gpu.flr();

        assertTrue(as.physAddr(va).isEmpty());
        ErrnoException sigbus = assertThrows(ErrnoException.class, () -> load64(va));
        assertEquals(Errno.EFAULT, sigbus.errno());
        assertTrue(sigbus.getMessage().contains("SIGBUS") && sigbus.getMessage().contains("does not decode"),
                sigbus.getMessage());
        gpu.configSpace().write(PciRegs.BASE_ADDRESS_0, 4, (int) bar0);
        gpu.configSpace().write(PciRegs.BASE_ADDRESS_0 + 4, 4, (int) (bar0 >>> 32));
        gpu.setMemorySpace(true);
        assertEquals(ID_VALUE, load64(va), "decoding again: the page faults back in");
    }

    @Test
    void aSecondaryBusResetAboveTheFunctionZapsItsMapping() {
        long va = as.mmapBar(gpu, 2, 0, PAGE, PROT_READ | PROT_WRITE);
        store64(va, 7);

        gpu.upstreamBridge().orElseThrow().resetSecondaryBus();

        assertTrue(as.physAddr(va).isEmpty());
        assertErrno(Errno.EFAULT, () -> load64(va));
    }

    @Test
    void hotUnplugZapsTheMappingForGoodEvenWhenTheFunctionComesBack() {
        long va = as.mmapBar(gpu, 0, 0, 2 * PAGE, PROT_READ | PROT_WRITE);
        assertEquals(ID_VALUE, load64(va));

        machine.hotUnplug(gpu);

        assertTrue(as.physAddr(va).isEmpty());
        ErrnoException gone = assertThrows(ErrnoException.class, () -> load64(va));
        assertEquals(Errno.EFAULT, gone.errno());
        assertTrue(gone.getMessage().contains("left its bus"), gone.getMessage());
        assertErrno(Errno.ENODEV, () -> as.mmapBar(gpu, 0, 0, PAGE, PROT_READ));

        assertTrue(machine.removeModel(copyEngine));
        machine.addModel(new CopyEngineModel());
        assertTrue(gpu.isPresent(), "the slot has hardware again");
        assertErrno(Errno.EFAULT, () -> load64(va + PAGE));
        as.munmap(va, 2 * PAGE);
        long again = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ);
        assertEquals(ID_VALUE, load64(again), "a new mapping of the new hardware works");
    }

    @Test
    void unloadingTheDeviceModelZapsTheMappingForGood() {
        long va = as.mmapBar(gpu, 2, 0, PAGE, PROT_READ | PROT_WRITE);
        store64(va, 9);

        assertTrue(machine.removeModel(copyEngine));

        assertErrno(Errno.EFAULT, () -> load64(va));
    }

    @Test
    void aFailedAccessAcrossADeadBarPageChangesNothing() {
        long bar = as.mmapBar(gpu, 2, 0, PAGE, PROT_READ | PROT_WRITE);
        long va = as.mmapAnonymousFixed(bar - PAGE, PAGE, PROT_READ | PROT_WRITE);
        machine.hotUnplug(gpu);

        byte[] ones = new byte[2 * (int) PAGE];
        Arrays.fill(ones, (byte) 1);
        assertErrno(Errno.EFAULT, () -> as.write(va, MemorySegment.ofArray(ones)));
        assertEquals(0, load64(va), "the anonymous page before the dead BAR page was not written");
    }

    @Test
    void mprotectAppliesToABarMappingAndASplitKeepsTheZapping() {
        long va = as.mmapBar(gpu, 2, 0, 3 * PAGE, PROT_READ | PROT_WRITE);
        as.mprotect(va + PAGE, PAGE, PROT_READ);
        assertErrno(Errno.EFAULT, () -> store64(va + PAGE, 1));
        store64(va + 2 * PAGE, 5);
        assertEquals(new VmaBacking.PciBar(gpu, 2, 2 * PAGE), as.findVma(va + 2 * PAGE).orElseThrow().backing());

        gpu.resetFunction();

        assertTrue(as.physAddr(va + 2 * PAGE).isEmpty(), "the piece split off is zapped too");
        assertEquals(5, load64(va + 2 * PAGE));
    }

    @Test
    void badMappingRequestsAreRefusedAsVfioPciCoreMmapDoes() {
        assertErrno(Errno.EINVAL, () -> as.mmapBar(null, 0, 0, PAGE, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 1, 0, PAGE, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 0, 100, PAGE, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 0, -PAGE, PAGE, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 0, 0, 0, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 0, 16 << 20, PAGE, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 0, (16 << 20) - PAGE, 2 * PAGE, PROT_READ));
        assertErrno(Errno.EINVAL, () -> as.mmapBar(gpu, 0, 0, PAGE, 0x10));
        ErrnoException past = assertThrows(ErrnoException.class, () -> as.mmapBar(gpu, 0, 0, Long.MAX_VALUE, PROT_READ));
        assertEquals(Errno.EINVAL, past.errno());
        assertTrue(past.getMessage().contains("BAR 0 of " + gpu.bdf()), past.getMessage());
        assertTrue(as.vmas().isEmpty(), "nothing was mapped");
    }

    @Test
    void aResetAfterMunmapOrExitTouchesNothing() {
        long va = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ);
        assertEquals(ID_VALUE, load64(va));
        as.munmap(va, PAGE);
        List<InvalidateReason> seen = new CopyOnWriteArrayList<>();
        long anon = as.mmapAnonymousFixed(va, PAGE, PROT_READ | PROT_WRITE);
        store64(anon, 42);
        as.registerNotifier(anon, PAGE, (range, reason, seq) -> seen.add(reason));

        gpu.resetFunction();

        assertEquals(List.of(), seen, "the old mapping's listener is gone with it");
        assertEquals(42, load64(anon));
        long again = as.mmapBar(gpu, 0, 0, PAGE, PROT_READ);
        assertEquals(ID_VALUE, load64(again));
        as.close();
        gpu.resetFunction();
        assertFalse(as.physAddr(again).isPresent());
    }
}
