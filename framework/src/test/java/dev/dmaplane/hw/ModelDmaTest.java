package dev.dmaplane.hw;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The model SDK's DMA helpers: transfers through the function's IOMMU domain that end in a status, never an
 * exception in the model (libvfio-user {@code vfu_sgl_read}/{@code vfu_sgl_write}, QEMU {@code pci_dma_rw}
 * returning {@code MemTxResult}); and DMA into the function's own register BAR refused, the lesson of QEMU's
 * CVE-2021-3929 ({@code hw/nvme}, fixed by the re-entrancy guard in {@code softmmu/memory.c}); and a probe that
 * asks for every translation of a transfer before any byte moves, as a device's ATS Translation Request does (PCIe
 * Base Specification, 10.2 Address Translation Services).
 */
class ModelDmaTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final HostMemory mem = machine.memory();
    private final ModelDma dma = ModelDma.of(gpu);
    private final Arena arena = Arena.ofConfined();
    private long page;
    private long iova;

    @BeforeEach
    void map() {
        gpu.setMaster(true);
        page = mem.allocPages(0) << HostMemory.PAGE_SHIFT;
        mem.slice(page, 4096).fill((byte) 0x11);
        iova = gpu.dma().mapSingle(page, 4096, DmaDirection.BIDIRECTIONAL);
    }

    @AfterEach
    void close() {
        gpu.dma().unmapSingle(iova, 4096, DmaDirection.BIDIRECTIONAL);
        mem.putPage(page >>> HostMemory.PAGE_SHIFT);
        arena.close();
        machine.close();
    }

    @Test
    void readAndWriteMoveRealBytesThroughTheIommu() {
        MemorySegment src = arena.allocate(256).fill((byte) 0x7E);
        assertEquals(new DmaStatus.Done(256), dma.write(iova + 512, src));
        assertEquals(0x7E, mem.slice(page + 512, 256).get(ValueLayout.JAVA_BYTE, 255));
        assertEquals(0x11, mem.slice(page + 768, 1).get(ValueLayout.JAVA_BYTE, 0));
        MemorySegment back = arena.allocate(1024);
        assertTrue(dma.read(iova, back).ok());
        assertEquals(-1, back.asSlice(512, 256).mismatch(src));
        assertEquals(0, dma.faults());
    }

    @Test
    void scatterStopsAtTheFirstUnmappedSpanAndReportsWhatMoved() {
        MemorySegment src = arena.allocate(3 * 1024).fill((byte) 0x42);
        long unmapped = iova + (64L << 20);
        DmaStatus st = dma.scatter(src, List.of(new DmaSpan(iova, 1024), new DmaSpan(unmapped, 1024),
                new DmaSpan(iova + 2048, 1024)));
        DmaStatus.Fault f = assertInstanceOf(DmaStatus.Fault.class, st);
        assertEquals(unmapped, f.busAddr());
        assertEquals(1024, f.moved());
        assertEquals(Errno.EFAULT, f.errno());
        assertEquals(0x42, mem.slice(page, 4096).get(ValueLayout.JAVA_BYTE, 1023), "the span before the fault moved");
        assertEquals(0x11, mem.slice(page, 4096).get(ValueLayout.JAVA_BYTE, 2048), "nothing after it did");
        assertEquals(1, dma.faults());
    }

    @Test
    void gatherReadsSpansInOrder() {
        mem.slice(page, 4096).asSlice(0, 8).fill((byte) 1);
        mem.slice(page, 4096).asSlice(4000, 8).fill((byte) 2);
        MemorySegment dst = arena.allocate(16);
        assertTrue(dma.gather(List.of(new DmaSpan(iova + 4000, 8), new DmaSpan(iova, 8)), dst).ok());
        assertEquals(2, dst.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(1, dst.get(ValueLayout.JAVA_BYTE, 8));
    }

    @Test
    void dmaIntoTheFunctionsOwnRegisterBarIsRefusedBeforeAnyByteMoves() {
        long regs = gpu.bar(0).orElseThrow().address();
        MemorySegment src = arena.allocate(8);
        src.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, CTRL_ENABLE);
        DmaStatus.Fault f = assertInstanceOf(DmaStatus.Fault.class, dma.write(regs + REG_CTRL, src));
        assertEquals(Errno.EPERM, f.errno());
        assertEquals(0, f.moved());
        assertTrue(f.reason().contains("own register BAR0"), f.reason());
        assertEquals(0, gpu.bar(0).orElseThrow().mmio().read(REG_CTRL, 8), "the engine's registers are untouched");
        DmaStatus.Fault sg = assertInstanceOf(DmaStatus.Fault.class, dma.scatter(arena.allocate(16),
                List.of(new DmaSpan(iova, 8), new DmaSpan(regs + 0x1000, 8))));
        assertEquals(0, sg.moved(), "checked before the first span moves");
        assertEquals(0x11, mem.slice(page, 1).get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void withoutBusMasteringEveryTransferFaults() {
        gpu.setMaster(false);
        DmaStatus.Fault f = assertInstanceOf(DmaStatus.Fault.class, dma.read(iova, arena.allocate(64)));
        assertEquals(Errno.EFAULT, f.errno());
        assertTrue(f.reason().contains("bus mastering is disabled"), f.reason());
    }

    @Test
    void aProbeChecksEveryPageOfATransferAndMovesNothing() {
        DmaTraffic before = gpu.dma().traffic();
        assertTrue(dma.probe(iova, 4096, false).ok());
        assertTrue(dma.probe(iova + 100, 200, true).ok());
        assertEquals(before, gpu.dma().traffic(), "a probe puts no data on the bus");
        DmaStatus.Fault f = assertInstanceOf(DmaStatus.Fault.class, dma.probe(iova, 2 * 4096, false),
                "the second page is not mapped");
        assertEquals(Errno.EFAULT, f.errno());
        assertEquals(0, f.moved());
        assertEquals(1, dma.faults());
        long regs = gpu.bar(0).orElseThrow().address();
        assertEquals(Errno.EPERM, assertInstanceOf(DmaStatus.Fault.class, dma.probe(regs, 8, true)).errno());
        gpu.setMaster(false);
        assertInstanceOf(DmaStatus.Fault.class, dma.probe(iova, 8, false), "bus mastering disabled");
        assertEquals(0x11, mem.slice(page, 4096).get(ValueLayout.JAVA_BYTE, 4095), "no byte changed");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> dma.probe(iova, 0, false)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> dma.probe(-8, 16, false)).errno());
    }

    @Test
    void modelBugsAreErrnosNotFaults() {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> dma.gather(List.of(new DmaSpan(iova, 8)), arena.allocate(16)));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("8 bytes for a 16-byte buffer"), e.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> new DmaSpan(iova, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> new DmaSpan(-8, 16)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ModelDma.of(null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> dma.read(iova, null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> dma.scatter(arena.allocate(8), null)).errno());
        assertEquals(0, dma.faults());
    }
}
