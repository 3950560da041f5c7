package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.DmaDirection;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The GPU MMU as {@code drm_gpuvm} page tables drive it (Documentation/gpu/drm-vm-bind-async.rst for the faults a
 * VM_BIND user meets): translations through test-built tables, GPU page faults latched with VM, address and access
 * and the engine halted with its interrupt, per-engine TLBs that keep stale entries until invalidated, and SYSTEM
 * pages still checked by the IOMMU.
 */
class GpuMmuTest {
    private static final int VM = 3;
    private static final long VA = 0x1_2345_6000L;

    private GpuRig rig;
    private PageTables pt;

    @BeforeEach
    void boot() {
        rig = new GpuRig();
        pt = new PageTables(rig.window, 16L << 20);
        rig.regs.write(regVmRoot(VM), 8, pt.root);
    }

    @AfterEach
    void close() {
        rig.close();
    }

    private static long faultStatus(int engine, int vm, int reason, boolean write) {
        return MMU_FAULT_VALID | (write ? MMU_FAULT_WRITE : 0) | ((long) engine << MMU_FAULT_ENGINE_SHIFT)
                | ((long) vm << MMU_FAULT_VM_SHIFT) | ((long) reason << MMU_FAULT_REASON_SHIFT);
    }

    @Test
    void vmRootsTakeAlignedVramOffsetsAndVmZeroHasNone() {
        assertEquals(pt.root, rig.regs.read(regVmRoot(VM), 8));
        rig.regs.write(regVmRoot(4), 8, 0x1234);
        rig.regs.write(regVmRoot(0), 8, 0x10000);
        rig.regs.write(regVmRoot(5), 8, 1L << 30);
        assertEquals(List.of(0L, 0L, 0L), List.of(rig.regs.read(regVmRoot(4), 8), rig.regs.read(regVmRoot(0), 8),
                rig.regs.read(regVmRoot(5), 8)), "unaligned, VM 0 and beyond VRAM are dropped");
    }

    @Test
    void anUnmappedVaIsALatchedPageFaultThatHaltsAndInterrupts() throws InterruptedException {
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        pt.map(VA, dst.gpuAddr(), 4096, true);
        assertEquals(ST_PAGE_FAULT, rig.run(1, OP_COPY, 0, VM, VA + 4096 + 8, VA, 16), "the page after is unmapped");
        assertEquals(faultStatus(1, VM, FAULT_NOT_PRESENT, false), rig.regs.read(REG_MMU_FAULT_STATUS, 8));
        assertEquals(VA + 4096 + 8, rig.regs.read(REG_MMU_FAULT_ADDR, 8));
        assertEquals(List.of(CTRL_ENABLE | CTRL_HALTED, (long) ST_PAGE_FAULT, VA + 4096 + 8),
                List.of(rig.reg(1, RING_CTRL), rig.reg(1, RING_FAULT_STATUS), rig.reg(1, RING_FAULT_ADDR)));
        assertEquals(1, rig.irq[1].await(20, TimeUnit.SECONDS));

        assertEquals(ST_PAGE_FAULT, rig.run(0, OP_FILL, 0, VM, 1L << VA_BITS, 8, 0), "a VA of 41 bits");
        assertEquals(VA + 4096 + 8, rig.regs.read(REG_MMU_FAULT_ADDR, 8), "the first fault stays latched");
        assertEquals(2, rig.regs.read(REG_MMU_FAULT_COUNT, 8));
        rig.regs.write(REG_MMU_FAULT_STATUS, 8, MMU_FAULT_VALID);
        assertEquals(0, rig.regs.read(REG_MMU_FAULT_STATUS, 8));

        rig.resetEngine(0);
        assertEquals(ST_PAGE_FAULT, rig.run(0, OP_FILL, 0, VM, 1L << VA_BITS, 8, 0));
        assertEquals(faultStatus(0, VM, FAULT_RANGE, true), rig.regs.read(REG_MMU_FAULT_STATUS, 8));
    }

    @Test
    void aWriteToAReadOnlyPageFaultsAndReadsStillWork() {
        byte[] data = GpuRig.random(4096, 5);
        GpuRig.HostBuffer src = rig.host(4096, DmaDirection.BIDIRECTIONAL);
        src.put(data);
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        pt.map(VA, src.gpuAddr(), 4096, false);
        pt.map(VA + 4096, dst.gpuAddr(), 4096, true);
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, VA, VA + 4096, 4096), "reading a read-only page is fine");
        assertArrayEquals(data, dst.bytes());
        assertEquals(ST_PAGE_FAULT, rig.run(0, OP_COPY, 0, VM, VA + 4096, VA + 100, 64));
        assertEquals(faultStatus(0, VM, FAULT_READ_ONLY, true), rig.regs.read(REG_MMU_FAULT_STATUS, 8));
        assertEquals(VA + 100, rig.regs.read(REG_MMU_FAULT_ADDR, 8));
        assertArrayEquals(data, src.bytes(), "nothing written");
    }

    @Test
    void theTlbKeepsAStaleTranslationUntilInvalidated() {
        GpuRig.HostBuffer a = rig.host(4096, DmaDirection.BIDIRECTIONAL);
        GpuRig.HostBuffer b = rig.host(4096, DmaDirection.BIDIRECTIONAL);
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        a.put(GpuRig.random(4096, 1));
        b.put(GpuRig.random(4096, 2));
        pt.map(VA, a.gpuAddr(), 4096, false);
        pt.map(VA + 4096, dst.gpuAddr(), 4096, true);
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, VA, VA + 4096, 4096));
        assertArrayEquals(a.bytes(), dst.bytes());
        assertEquals(2, rig.device.tlbEntries(0));
        assertEquals(0, rig.device.tlbEntries(1), "each engine has its own TLB");

        pt.map(VA, b.gpuAddr(), 4096, false);
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, VA, VA + 4096, 4096));
        assertArrayEquals(a.bytes(), dst.bytes(), "no invalidate: the cached translation still points at a");
        assertEquals(ST_OK, rig.run(1, OP_COPY, 0, VM, VA, VA + 4096, 4096));
        assertArrayEquals(b.bytes(), dst.bytes(), "ce1 walks the new table");

        rig.regs.write(REG_TLB_INVALIDATE, 8, 7);
        assertEquals(2, rig.device.tlbEntries(0), "invalidating another VM keeps VM 3's entries");
        rig.regs.write(REG_TLB_INVALIDATE, 8, VM);
        assertEquals(List.of(0, 0), List.of(rig.device.tlbEntries(0), rig.device.tlbEntries(1)));
        a.put(new byte[4096]);
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, VA, VA + 4096, 4096));
        assertArrayEquals(b.bytes(), dst.bytes());
        rig.regs.write(REG_TLB_INVALIDATE, 8, TLB_INVALIDATE_ALL);
        assertEquals(0, rig.device.tlbEntries(0));
    }

    @Test
    void aSystemPageTheIommuRefusesIsADmaFaultNotAPageFault() {
        pt.map(VA, APERTURE_SYSTEM | 0x7_0000_0000L, 4096, true);
        assertEquals(ST_DMA_FAULT, rig.run(0, OP_FILL, 0, VM, VA + 16, 64, 0));
        assertEquals(APERTURE_SYSTEM | 0x7_0000_0010L, rig.reg(0, RING_FAULT_ADDR));
        assertEquals(0, rig.regs.read(REG_MMU_FAULT_STATUS, 8));
    }

    @Test
    void aTableEntryPointingOutsideVramIsABadTableFault() {
        pt.map(VA, 0, 4096, true);
        // point the level-1 entry for VA at the system aperture: tables live in VRAM only
        long root = pt.root + 8 * ((VA >>> 30) & (ROOT_ENTRIES - 1));
        MemorySegment e = MemorySegment.ofArray(new long[1]);
        rig.window.read(root, e);
        e.set(GpuRig.U64, 0, e.get(GpuRig.U64, 0) | PTE_SYSTEM);
        rig.window.write(root, e);
        assertEquals(ST_PAGE_FAULT, rig.run(0, OP_FILL, 0, VM, VA, 64, 0));
        assertEquals(faultStatus(0, VM, FAULT_BAD_TABLE, true), rig.regs.read(REG_MMU_FAULT_STATUS, 8));
    }

    /**
     * A 2 MiB leaf is cached once for all of its pages, as a GPU's TLB caches a fragment (amdgpu's
     * {@code AMDGPU_PTE_FRAG}): copying a whole 2 MiB VRAM page to another costs two TLB entries, not 1024.
     */
    @Test
    void aTwoMibLeafIsOneTlbEntry() {
        long huge = 0x40_0000_0000L;
        byte[] data = GpuRig.random(4096, 9);
        GpuRig.HostBuffer staging = rig.host(4096, DmaDirection.TO_DEVICE);
        staging.put(data);
        assertEquals(ST_OK, rig.run(1, OP_COPY, FLAG_PHYSICAL, 0, staging.gpuAddr(), (32L << 20) + HUGE_PAGE_SIZE - 4096, 4096));
        pt.mapHuge(huge, 32L << 20, false);
        pt.mapHuge(huge + HUGE_PAGE_SIZE, 36L << 20, true);
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, huge, huge + HUGE_PAGE_SIZE, HUGE_PAGE_SIZE));
        assertEquals(2, rig.device.tlbEntries(0), "one entry per 2 MiB leaf");
        GpuRig.HostBuffer back = rig.host(4096, DmaDirection.FROM_DEVICE);
        assertEquals(ST_OK, rig.run(1, OP_COPY, FLAG_PHYSICAL, 0, (36L << 20) + HUGE_PAGE_SIZE - 4096, back.gpuAddr(), 4096));
        assertArrayEquals(data, back.bytes(), "the leaf's last page arrived at the other leaf's last page");
    }
}
