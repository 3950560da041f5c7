package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.DmaDirection;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * FILL with pattern 0 as the hardware clear that amdgpu's VRAM clear ({@code amdgpu_fill_buffer} for
 * {@code AMDGPU_GEM_CREATE_VRAM_CLEARED}, amdgpu_ttm.c) relies on: VRAM reads back as zeros, never-written VRAM
 * stays uncommitted, written VRAM is zeroed in place, SYSTEM pages get zeros by DMA, and faults are a write's.
 */
class GpuClearTest {
    private static final long MIB = 1L << 20;
    private static final long VRAM = 1L << 30;
    private static final int VM = 3;
    private static final long VA = 0x1_0000_0000L;

    private GpuRig rig;

    @BeforeEach
    void boot() {
        rig = new GpuRig();
    }

    @AfterEach
    void close() {
        rig.close();
    }

    /** {@code n} bytes of VRAM at {@code offset} as ce1 copies them to host memory (hidden VRAM has no CPU view). */
    private byte[] vram(long offset, int n) {
        GpuRig.HostBuffer dst = rig.host(n, DmaDirection.FROM_DEVICE);
        dst.put(GpuRig.random(n, 99));
        assertEquals(ST_OK, rig.run(1, OP_COPY, FLAG_PHYSICAL, 0, offset, dst.gpuAddr(), n));
        return dst.bytes();
    }

    private static byte[] repeated(int n, int pattern) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (pattern >>> (8 * (i % 4)));
        }
        return b;
    }

    @Test
    void clearingTheWholeVramCommitsNothing() {
        long jobs = rig.device.stats(0).jobs();
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 0, VRAM, 0));
        assertEquals(0, rig.window.committedBytes(), "the 256 MiB window stays uncommitted");
        assertEquals(0, rig.device.hiddenVramCommitted(), "the 768 MiB beyond it too");
        assertEquals(jobs + 1, rig.device.stats(0).jobs(), "counted as any descriptor");
        assertArrayEquals(new byte[4096], rig.readVram(255 * MIB, 4096));
        assertArrayEquals(new byte[4096], vram(VRAM - 4096, 4096));
    }

    @Test
    void aPatternCommitsAndAClearZeroesWrittenVramInPlace() {
        int pattern = 0x5A6B7C8D;
        // 255..257 MiB: the window's last chunk and the first hidden one
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 255 * MIB, 2 * MIB, pattern));
        assertEquals(Vram.CHUNK, rig.window.committedBytes(), "a pattern is written: it commits");
        assertEquals(Vram.CHUNK, rig.device.hiddenVramCommitted());
        assertArrayEquals(repeated((int) (2 * MIB), pattern), vram(255 * MIB, (int) (2 * MIB)));

        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 255 * MIB + MIB / 2, MIB, 0));
        assertEquals(Vram.CHUNK, rig.window.committedBytes(), "cleared in place, nothing more committed");
        assertEquals(Vram.CHUNK, rig.device.hiddenVramCommitted());
        byte[] want = repeated((int) (2 * MIB), pattern);
        Arrays.fill(want, (int) (MIB / 2), (int) (MIB / 2 + MIB), (byte) 0);
        assertArrayEquals(want, vram(255 * MIB, (int) (2 * MIB)), "zeros in the range, the pattern around it");
    }

    @Test
    void aClearThroughAGpuVmZeroesVramInPlaceAndSystemPagesByDma() {
        PageTables pt = new PageTables(rig.window, 16 * MIB);
        rig.regs.write(regVmRoot(VM), 8, pt.root);
        GpuRig.HostBuffer sys = rig.host(4096, DmaDirection.BIDIRECTIONAL);
        sys.put(GpuRig.random(4096, 3));
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 64 * MIB, 4096, 0x01020304));
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, 700 * MIB, 4096, 0x05060708));
        pt.map(VA, 512 * MIB, 2 * 4096, true);              // hidden, never written
        pt.map(VA + 2 * 4096, sys.gpuAddr(), 4096, true);   // SYSTEM
        pt.map(VA + 3 * 4096, 64 * MIB, 4096, true);        // window, written
        pt.map(VA + 4 * 4096, 700 * MIB, 4096, true);       // hidden, written
        long window = rig.window.committedBytes();
        long hidden = rig.device.hiddenVramCommitted();

        assertEquals(ST_OK, rig.run(0, OP_FILL, 0, VM, VA, 5 * 4096, 0));
        assertEquals(window, rig.window.committedBytes());
        assertEquals(hidden, rig.device.hiddenVramCommitted(), "512 MiB stays uncommitted");
        assertArrayEquals(new byte[4096], sys.bytes(), "the SYSTEM page got zeros over the bus");
        assertArrayEquals(new byte[4096], rig.readVram(64 * MIB, 4096));
        assertArrayEquals(new byte[4096], vram(700 * MIB, 4096));
        assertArrayEquals(new byte[2 * 4096], vram(512 * MIB, 2 * 4096));
    }

    @Test
    void aClearFaultsExactlyAsAPatternFillDoes() {
        PageTables pt = new PageTables(rig.window, 16 * MIB);
        rig.regs.write(regVmRoot(VM), 8, pt.root);
        pt.map(VA, 800 * MIB, 4096, false);           // read-only
        pt.map(VA + 4096, 2 * VRAM, 4096, true);      // VRAM beyond VRAM
        for (long[] at : new long[][]{{VM, VA + 8}, {VM, VA + 4096 + 16}, {VM, VA + 2 * 4096}, {0, VRAM - 8}}) {
            int vm = (int) at[0];
            assertEquals(faultOf(vm, at[1], 0x0BADF00D), faultOf(vm, at[1], 0), String.format("VM %d at %#x", vm, at[1]));
        }
        assertEquals(0, rig.device.hiddenVramCommitted(), "nothing written by a faulting fill");
    }

    /** Engine 0's status, fault registers and the MMU's latched fault for a 16-byte fill; then clears both. */
    private List<Long> faultOf(int vm, long addr, int pattern) {
        int status = rig.run(0, OP_FILL, vm == 0 ? FLAG_PHYSICAL : 0, vm, addr, 16, pattern);
        List<Long> fault = List.of((long) status, rig.reg(0, RING_FAULT_STATUS), rig.reg(0, RING_FAULT_ADDR),
                rig.regs.read(REG_MMU_FAULT_STATUS, 8), rig.regs.read(REG_MMU_FAULT_ADDR, 8));
        assertEquals(ST_PAGE_FAULT, status);
        rig.regs.write(REG_MMU_FAULT_STATUS, 8, MMU_FAULT_VALID);
        rig.resetEngine(0);
        return fault;
    }
}
