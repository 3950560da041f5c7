package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.testing.Eventually;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The copy engines on the generalized ring, driven through BAR0 as {@code GpuRegs} documents: copies between host
 * memory (by DMA through the IOMMU, {@code kernel/dma/mapping.c}) and VRAM inside and beyond the BAR window, fills,
 * the seqno write-back and MSI-X interrupt a {@code drm_sched} fence callback waits for
 * ({@code drivers/gpu/drm/scheduler/sched_main.c} {@code drm_sched_job_done}), bad descriptors and IOMMU refusals as
 * statuses, and the busy-time counters of {@code Documentation/gpu/drm-usage-stats.rst}.
 */
class GpuRingTest {
    private GpuRig rig;

    @BeforeEach
    void boot() {
        rig = new GpuRig();
    }

    @AfterEach
    void close() {
        rig.close();
    }

    @Test
    void theGlobalBlockDescribesTheGpu() {
        assertEquals(List.of(ID_VALUE, 3L, 1L << 30, 256L << 20, (long) VM_COUNT),
                List.of(rig.regs.read(REG_ID, 8), rig.regs.read(REG_ENGINES, 8), rig.regs.read(REG_VRAM_SIZE, 8),
                        rig.regs.read(REG_VISIBLE_SIZE, 8), rig.regs.read(REG_VM_COUNT, 8)));
        assertEquals(List.of(CLASS_COPY, CLASS_COPY, CLASS_COMPUTE), List.of(rig.reg(0, RING_CLASS),
                rig.reg(1, RING_CLASS), rig.reg(2, RING_CLASS)));
        assertEquals(List.of(0L, 1L, 2L), List.of(rig.reg(0, RING_IRQ_VECTOR), rig.reg(1, RING_IRQ_VECTOR),
                rig.reg(2, RING_IRQ_VECTOR)), "each engine raises its own vector at power-on");
        assertEquals(CTRL_ENABLE, rig.reg(0, RING_CTRL));
        rig.setReg(0, RING_SIZE, 64);
        assertEquals(GpuRig.RING_ENTRIES, rig.reg(0, RING_SIZE), "an enabled engine keeps its ring");
    }

    @Test
    void copiesHostToVramAndBackInsideAndBeyondTheWindow() {
        byte[] data = GpuRig.random(300_000, 7);
        GpuRig.HostBuffer src = rig.host(data.length, DmaDirection.TO_DEVICE);
        src.put(data);
        GpuRig.HostBuffer dst = rig.host(data.length, DmaDirection.FROM_DEVICE);
        long visible = 64L << 20;
        long hidden = 700L << 20; // beyond the 256 MiB window: engines only
        assertEquals(ST_OK, rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, src.gpuAddr(), visible, data.length));
        assertArrayEquals(data, rig.readVram(visible, data.length), "the CPU sees the copy through the BAR");
        assertEquals(0, rig.device.hiddenVramCommitted(), "no hidden VRAM touched yet");
        assertEquals(ST_OK, rig.run(1, OP_COPY, FLAG_PHYSICAL, 0, visible, hidden, data.length));
        assertEquals(Vram.CHUNK, rig.device.hiddenVramCommitted(), "one 2 MiB chunk committed on first write");
        assertEquals(ST_OK, rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, hidden, dst.gpuAddr(), data.length));
        assertArrayEquals(data, dst.bytes());
    }

    @Test
    void fillRepeatsThePatternsLittleEndianBytes() {
        GpuRig.HostBuffer dst = rig.host(10_001, DmaDirection.FROM_DEVICE);
        assertEquals(ST_OK, rig.run(1, OP_FILL, FLAG_PHYSICAL, 0, dst.gpuAddr(), 10_001, 0xA1B2C3D4L));
        byte[] want = new byte[10_001];
        byte[] pattern = {(byte) 0xD4, (byte) 0xC3, (byte) 0xB2, (byte) 0xA1};
        for (int i = 0; i < want.length; i++) {
            want[i] = pattern[i % 4];
        }
        assertArrayEquals(want, dst.bytes());
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, (300L << 20) + 3, 5, 0x11223344L));
        assertEquals(ST_OK, rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, (300L << 20) + 3, dst.gpuAddr(), 5));
        assertArrayEquals(new byte[]{0x44, 0x33, 0x22, 0x11, 0x44}, Arrays.copyOf(dst.bytes(), 5),
                "hidden VRAM at an odd offset");
    }

    @Test
    void aDescriptorWritesItsSeqnoToTheFenceAndRaisesItsVector() throws InterruptedException {
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        assertEquals(ST_OK, rig.run(1, OP_FILL, FLAG_PHYSICAL, 0, dst.gpuAddr(), 4096, 1));
        long quiet = rig.lastSeqno();
        assertEquals(quiet, rig.fence(1));
        assertEquals(quiet, rig.reg(1, RING_COMPLETED_SEQNO));
        assertEquals(0, rig.irq[1].count(), "no interrupt asked for");

        rig.setReg(1, RING_IRQ_VECTOR, 5);
        assertEquals(5, rig.reg(1, RING_IRQ_VECTOR));
        rig.setReg(1, RING_IRQ_VECTOR, 1);
        MemorySegment loud = rig.submit(1, OP_FILL, FLAG_PHYSICAL | FLAG_INTERRUPT, 0, dst.gpuAddr(), 4096, 2);
        assertEquals(1, rig.irq[1].await(20, TimeUnit.SECONDS), "the completion interrupt on vector 1");
        assertEquals(ST_OK, rig.await(1, loud));
        assertEquals(rig.lastSeqno(), rig.fence(1));
        assertEquals(rig.lastSeqno(), rig.reg(1, RING_COMPLETED_SEQNO));
        assertEquals(0, rig.irq[0].count() + rig.irq[2].count(), "the other engines' vectors stay quiet");
    }

    @Test
    void theInterruptHandlerSeesTheOutcomePublished() {
        rig.vectors.free(1);
        List<List<Long>> seen = new CopyOnWriteArrayList<>();
        rig.vectors.request(1, vector -> {
            seen.add(List.of(rig.reg(1, RING_CTRL), rig.reg(1, RING_HEAD), rig.reg(1, RING_COMPLETED_SEQNO)));
            return IrqReturn.HANDLED;
        }, null, "gpu-test-seen");
        GpuRig.HostBuffer dst = rig.host(4096, DmaDirection.FROM_DEVICE);
        MemorySegment ok = rig.submit(1, OP_FILL, FLAG_PHYSICAL | FLAG_INTERRUPT, 0, dst.gpuAddr(), 4096, 1);
        long seqno = rig.lastSeqno();
        Eventually.eventually(() -> seen.size() == 1, GpuRig.WAIT, "the completion interrupt");
        assertEquals(List.of(CTRL_ENABLE, rig.reg(1, RING_TAIL), seqno), seen.getFirst(),
                "not busy, head past the descriptor, seqno completed");
        assertEquals(ST_OK, ok.get(GpuRig.U32, DESC_STATUS));

        rig.submit(1, OP_FILL, FLAG_PHYSICAL, 0, APERTURE_SYSTEM | 0x7_0000_0000L, 64, 0);
        Eventually.eventually(() -> seen.size() == 2, GpuRig.WAIT, "the fault interrupt");
        assertEquals(List.of(CTRL_ENABLE | CTRL_HALTED, rig.reg(1, RING_TAIL), seqno), seen.get(1),
                "halted, not busy, no new seqno");
    }

    @Test
    void badDescriptorsEndWithBadDescHaltAndInterrupt() throws InterruptedException {
        GpuRig.HostBuffer buf = rig.host(4096, DmaDirection.BIDIRECTIONAL);
        long[][] cases = {
                {OP_KERNEL, FLAG_PHYSICAL, 0, KERNEL_SUM, buf.gpuAddr(), buf.gpuAddr(), 1}, // compute op on a copy engine
                {99, FLAG_PHYSICAL, 0, 0, 0, 0},                                          // unknown opcode
                {OP_COPY, FLAG_PHYSICAL, 0, buf.gpuAddr(), buf.gpuAddr(), 0},              // length 0
                {OP_FILL, FLAG_PHYSICAL | 0x100, 0, buf.gpuAddr(), 64, 0},                 // unknown flag
                {OP_FILL, 0, 0, buf.gpuAddr(), 64, 0},                                     // VM 0 without PHYSICAL
                {OP_FILL, FLAG_PHYSICAL, 1, buf.gpuAddr(), 64, 0},                         // PHYSICAL outside VM 0
                {OP_FILL, 0, 5, 0x1000, 64, 0},                                            // VM 5 is off
                {OP_FILL, 0, VM_COUNT, 0x1000, 64, 0},                                     // no such VM slot
        };
        for (long[] c : cases) {
            long completed = rig.reg(0, RING_COMPLETED_SEQNO);
            long[] args = Arrays.copyOfRange(c, 3, c.length);
            int status = rig.run(0, (int) c[0], (int) c[1], (int) c[2], args);
            String what = Arrays.toString(c);
            assertEquals(ST_BAD_DESC, status, what);
            assertEquals(1, rig.irq[0].await(20, TimeUnit.SECONDS), "a fault raises the vector: " + what);
            assertEquals(CTRL_ENABLE | CTRL_HALTED, rig.reg(0, RING_CTRL), what);
            assertEquals(ST_BAD_DESC, rig.reg(0, RING_FAULT_STATUS), what);
            assertEquals(completed, rig.reg(0, RING_COMPLETED_SEQNO), "no seqno for a failed job: " + what);
            assertEquals(1L << STATUS_HALTED, rig.regs.read(REG_STATUS, 8), "engine 0 halted, none busy: " + what);
            rig.resetEngine(0);
            assertEquals(List.of(CTRL_ENABLE, 0L), List.of(rig.reg(0, RING_CTRL), rig.reg(0, RING_FAULT_STATUS)));
        }
        assertEquals(ST_OK, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, buf.gpuAddr(), 64, 0), "the engine works again");
    }

    @Test
    void aSystemAccessTheIommuRefusesIsADmaFault() throws InterruptedException {
        GpuRig.HostBuffer readOnly = rig.host(8192, DmaDirection.TO_DEVICE);
        long unmapped = APERTURE_SYSTEM | 0x7_0000_0000L;
        assertEquals(ST_DMA_FAULT, rig.run(0, OP_COPY, FLAG_PHYSICAL, 0, unmapped, 0, 4096));
        assertEquals(unmapped, rig.reg(0, RING_FAULT_ADDR), "the refused bus address, aperture-tagged");
        assertEquals(ST_DMA_FAULT, rig.reg(0, RING_FAULT_STATUS));
        assertEquals(1, rig.irq[0].await(20, TimeUnit.SECONDS));
        assertEquals(0, rig.regs.read(REG_MMU_FAULT_STATUS, 8), "an IOMMU refusal is not a GPU page fault");
        rig.resetEngine(0);

        assertEquals(ST_DMA_FAULT, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, readOnly.gpuAddr(), 4096, 0),
                "a write to a TO_DEVICE mapping");
        rig.resetEngine(0);
        long ownBar = APERTURE_SYSTEM | rig.fn.bar(0).orElseThrow().address();
        assertEquals(ST_DMA_FAULT, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, ownBar, 8, 0), "no DMA into its own BAR");
        rig.resetEngine(0);
        assertEquals(ST_PAGE_FAULT, rig.run(0, OP_FILL, FLAG_PHYSICAL, 0, (1L << 30) - 8, 16, 0),
                "VRAM beyond its size");
        assertEquals(MMU_FAULT_VALID | MMU_FAULT_WRITE | ((long) FAULT_RANGE << MMU_FAULT_REASON_SHIFT),
                rig.regs.read(REG_MMU_FAULT_STATUS, 8), "latched for VM 0, engine 0");
    }

    @Test
    void aRingFetchTheIommuRefusesHaltsWithoutTakingTheDescriptor() throws InterruptedException {
        rig.setReg(2, RING_CTRL, 0);
        rig.setReg(2, RING_BASE, APERTURE_SYSTEM | 0x7_0000_0000L);
        rig.setReg(2, RING_CTRL, CTRL_ENABLE);
        rig.setReg(2, RING_TAIL, rig.reg(2, RING_TAIL) + 1);
        assertEquals(1, rig.irq[2].await(20, TimeUnit.SECONDS));
        assertEquals(CTRL_ENABLE | CTRL_HALTED, rig.reg(2, RING_CTRL));
        assertEquals(List.of((long) ST_DMA_FAULT, APERTURE_SYSTEM | 0x7_0000_0000L),
                List.of(rig.reg(2, RING_FAULT_STATUS), rig.reg(2, RING_FAULT_ADDR)));
        assertEquals(rig.reg(2, RING_TAIL) - 1, rig.reg(2, RING_HEAD), "the head stays on the unfetched descriptor");
    }

    @Test
    void allThreeEnginesRunQueuedRingsAtOnce() {
        int jobs = GpuRig.RING_ENTRIES - 1;
        GpuRig.HostBuffer[] dst = new GpuRig.HostBuffer[ENGINE_COUNT];
        MemorySegment[] last = new MemorySegment[ENGINE_COUNT];
        long[] seqnos = new long[ENGINE_COUNT];
        for (int i = 0; i < jobs; i++) {
            for (int e = 0; e < ENGINE_COUNT; e++) {
                if (i == 0) {
                    dst[e] = rig.host(jobs * 4096, DmaDirection.FROM_DEVICE);
                }
                last[e] = e == ENGINE_COMPUTE
                        ? rig.submit(e, OP_KERNEL, FLAG_PHYSICAL, 0, KERNEL_CRC32C, dst[0].gpuAddr(),
                        dst[e].gpuAddr() + 4L * i, 4096, 0)
                        : rig.submit(e, OP_FILL, FLAG_PHYSICAL, 0, dst[e].gpuAddr() + 4096L * i, 4096, i + 1);
                seqnos[e] = rig.lastSeqno();
            }
        }
        for (int e = 0; e < ENGINE_COUNT; e++) {
            assertEquals(ST_OK, rig.await(e, last[e]), ENGINE_NAMES[e]);
            assertEquals(seqnos[e], rig.fence(e), ENGINE_NAMES[e] + "'s fence holds its last seqno");
            assertEquals(jobs, rig.device.stats(e).jobs());
        }
        for (int i = 0; i < jobs; i++) {
            assertEquals(i + 1, dst[1].cpu().get(GpuRig.U32, 4096L * i));
        }
    }

    @Test
    void aDoorbellMoreThanARingAheadHalts() {
        long head = rig.reg(0, RING_HEAD);
        rig.setReg(0, RING_TAIL, head + GpuRig.RING_ENTRIES + 1);
        assertEquals(CTRL_ENABLE | CTRL_HALTED, rig.reg(0, RING_CTRL));
        assertEquals(List.of((long) ST_BAD_DESC, head + GpuRig.RING_ENTRIES + 1),
                List.of(rig.reg(0, RING_FAULT_STATUS), rig.reg(0, RING_FAULT_ADDR)));
        assertEquals(head, rig.reg(0, RING_HEAD), "nothing ran");
    }

    @Test
    void theCountersAddUpBusyTimeAndJobs() {
        GpuRig.HostBuffer dst = rig.host(1 << 20, DmaDirection.FROM_DEVICE);
        for (int i = 0; i < 5; i++) {
            assertEquals(ST_OK, rig.run(1, OP_FILL, FLAG_PHYSICAL, 0, dst.gpuAddr(), 1 << 20, i));
        }
        EngineStats s = rig.device.stats(1);
        assertEquals("ce1", s.engine());
        assertEquals(5, s.jobs());
        assertTrue(s.busyNanos() > 0);
        assertEquals(List.of(5L, s.busyNanos()), List.of(rig.reg(1, RING_JOBS_COMPLETED), rig.reg(1, RING_BUSY_NS)));
        assertEquals(0, rig.device.stats(0).jobs());
    }
}
