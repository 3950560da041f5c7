package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.DmaDirection;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The copy engines' linear copy as amdgpu's {@code amdgpu_copy_buffer} programs it (amdgpu_ttm.c): bytes move
 * between VRAM and SYSTEM pages in place, across VRAM chunk boundaries and the BAR window's end, at any alignment;
 * never-written VRAM copies out as zeros without being committed; a SYSTEM-to-SYSTEM copy goes through the engine's
 * buffer; through a GPU VM the copy follows scattered pages of either aperture.
 */
class GpuCopyTest {
    private static final long MIB = 1L << 20;
    private static final int VM = 5;
    private static final long VA = 0x2_0000_0000L;

    private GpuRig rig;

    @BeforeEach
    void boot() {
        rig = new GpuRig();
    }

    @AfterEach
    void close() {
        rig.close();
    }

    private int copy(long src, long dst, long length) {
        return rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, src, dst, length);
    }

    @Test
    void hostToVramAndBackAcrossChunksAndTheWindowsEnd() {
        int n = (int) (2 * MIB);
        long at = 255 * MIB + 777;   // unaligned, from the window's last chunk into hidden VRAM's first two
        byte[] data = GpuRig.random(n, 1);
        GpuRig.HostBuffer src = rig.host(n, DmaDirection.TO_DEVICE);
        GpuRig.HostBuffer dst = rig.host(n, DmaDirection.FROM_DEVICE);
        src.put(data);
        assertEquals(ST_OK, copy(src.gpuAddr(), at, n));
        assertEquals(ST_OK, copy(at, dst.gpuAddr(), n));
        assertArrayEquals(data, dst.bytes());
        assertArrayEquals(Arrays.copyOfRange(data, 0, 4096), rig.readVram(at, 4096), "the CPU's view of the window");
    }

    @Test
    void neverWrittenVramCopiesOutAsZerosAndStaysUncommitted() {
        int n = (int) (2 * MIB);
        GpuRig.HostBuffer dst = rig.host(n, DmaDirection.FROM_DEVICE);
        dst.put(GpuRig.random(n, 2));
        assertEquals(ST_OK, copy(600 * MIB + 4096, dst.gpuAddr(), n));
        assertArrayEquals(new byte[n], dst.bytes());
        assertEquals(ST_OK, copy(100 * MIB, dst.gpuAddr(), n));
        assertArrayEquals(new byte[n], dst.bytes());
        assertEquals(0, rig.window.committedBytes());
        assertEquals(0, rig.device.hiddenVramCommitted());

        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 700 * MIB, MIB, 0x11223344));
        assertEquals(ST_OK, copy(610 * MIB, 700 * MIB + 4096, 8192));
        assertEquals(Vram.CHUNK, rig.device.hiddenVramCommitted(), "only the filled chunk is committed");
        GpuRig.HostBuffer back = rig.host(3 * 4096, DmaDirection.FROM_DEVICE);
        assertEquals(ST_OK, copy(700 * MIB, back.gpuAddr(), 3 * 4096));
        byte[] got = back.bytes();
        assertArrayEquals(new byte[8192], Arrays.copyOfRange(got, 4096, 3 * 4096), "zeros copied over the pattern");
        assertEquals(0x44, got[0] & 0xFF, "the pattern before them");
    }

    @Test
    void vramToVramAndSystemToSystem() {
        int n = (int) (2 * MIB - 100);
        byte[] data = GpuRig.random(n, 3);
        GpuRig.HostBuffer a = rig.host(n, DmaDirection.BIDIRECTIONAL);
        GpuRig.HostBuffer b = rig.host(n, DmaDirection.BIDIRECTIONAL);
        a.put(data);
        assertEquals(ST_OK, copy(a.gpuAddr(), b.gpuAddr(), n), "SYSTEM to SYSTEM through the engine's buffer");
        assertArrayEquals(data, b.bytes());
        assertEquals(ST_OK, copy(b.gpuAddr(), 255 * MIB + 3, n));
        assertEquals(ST_OK, copy(255 * MIB + 3, 800 * MIB + 5, n), "window to hidden VRAM");
        a.put(new byte[n]);
        assertEquals(ST_OK, copy(800 * MIB + 5, a.gpuAddr(), n));
        assertArrayEquals(data, a.bytes());
    }

    @Test
    void throughAVmTheCopyFollowsScatteredPagesOfBothApertures() {
        PageTables pt = new PageTables(rig.window, 16 * MIB);
        rig.regs.write(regVmRoot(VM), 8, pt.root);
        GpuRig.HostBuffer sys = rig.host(2 * 4096, DmaDirection.BIDIRECTIONAL);
        pt.map(VA, 300 * MIB, 4096, true);                   // hidden VRAM
        pt.map(VA + 4096, sys.gpuAddr() + 4096, 4096, true); // SYSTEM, second page first
        pt.map(VA + 2 * 4096, 40 * MIB, 4096, true);         // window
        pt.map(VA + 3 * 4096, sys.gpuAddr(), 4096, true);    // SYSTEM, first page
        int n = 4 * 4096;
        byte[] data = GpuRig.random(n, 4);
        GpuRig.HostBuffer in = rig.host(n, DmaDirection.TO_DEVICE);
        GpuRig.HostBuffer out = rig.host(n, DmaDirection.FROM_DEVICE);
        in.put(data);
        pt.map(VA + 8 * 4096, in.gpuAddr(), n, false);
        pt.map(VA + 16 * 4096, out.gpuAddr(), n, true);
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, VA + 8 * 4096, VA, n));
        assertEquals(ST_OK, rig.run(0, OP_COPY, 0, VM, VA, VA + 16 * 4096, n));
        assertArrayEquals(data, out.bytes());
        byte[] s = sys.bytes();
        assertArrayEquals(Arrays.copyOfRange(data, 3 * 4096, 4 * 4096), Arrays.copyOfRange(s, 0, 4096));
        assertArrayEquals(Arrays.copyOfRange(data, 4096, 2 * 4096), Arrays.copyOfRange(s, 4096, 2 * 4096));
        assertArrayEquals(Arrays.copyOfRange(data, 2 * 4096, 3 * 4096), rig.readVram(40 * MIB, 4096));
    }

    @Test
    void aCopyFaultsOnAReadOnlyDestinationAtThePageItMeets() {
        PageTables pt = new PageTables(rig.window, 16 * MIB);
        rig.regs.write(regVmRoot(VM), 8, pt.root);
        pt.map(VA, 900 * MIB, 4096, true);
        pt.map(VA + 4096, 901 * MIB, 4096, false); // read-only
        GpuRig.HostBuffer in = rig.host(2 * 4096, DmaDirection.TO_DEVICE);
        in.put(GpuRig.random(2 * 4096, 5));
        pt.map(VA + 64 * 4096, in.gpuAddr(), 2 * 4096, false);
        assertEquals(ST_PAGE_FAULT, rig.run(0, OP_COPY, 0, VM, VA + 64 * 4096, VA, 2 * 4096));
        assertEquals(VA + 4096, rig.reg(0, RING_FAULT_ADDR));
    }
}
