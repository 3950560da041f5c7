package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.hw.RegisterBlock;
import dev.dmaplane.pci.PciReset;

import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * One GPU (QEMU's {@code DeviceState} of a PCI display controller with its engines): BAR0's global and MMU blocks,
 * the VRAM, the GPU MMU and three engines each on its own thread. See {@link GpuRegs} for the programming model.
 */
public final class GpuDevice implements ModelDevice {
    private final Vram vram;
    private final GpuMmu mmu;
    private final List<Engine> engines = new ArrayList<>();
    private final RegisterBlock registers;
    private boolean gone;

    GpuDevice(ModelContext ctx, Vram vram) {
        this.vram = vram;
        this.mmu = new GpuMmu(vram);
        Apertures apertures = new Apertures(vram, ctx.dma());
        for (int e = 0; e < ENGINE_COUNT; e++) {
            engines.add(new Engine(e, ctx, mmu, apertures));
        }
        RegisterBlock.Builder b = RegisterBlock.builder(ctx.function().bdf() + " gpu BAR0")
                .constant("ID", REG_ID, 8, ID_VALUE)
                .constant("ENGINES", REG_ENGINES, 8, ENGINE_COUNT)
                .constant("VRAM_SIZE", REG_VRAM_SIZE, 8, vram.size())
                .constant("VISIBLE_SIZE", REG_VISIBLE_SIZE, 8, vram.visible())
                .readOnly("STATUS", REG_STATUS, 8, this::status)
                .constant("VM_COUNT", REG_VM_COUNT, 8, VM_COUNT);
        for (int vm = 0; vm < VM_COUNT; vm++) {
            int slot = vm;
            b.register("VM_ROOT" + vm, regVmRoot(vm), 8, () -> mmu.root(slot), v -> mmu.setRoot(slot, v));
        }
        b.doorbell("TLB_INVALIDATE", REG_TLB_INVALIDATE, 8, this::invalidate)
                .register("MMU_FAULT_STATUS", REG_MMU_FAULT_STATUS, 8, mmu::faultStatus, mmu::clearFault)
                .readOnly("MMU_FAULT_ADDR", REG_MMU_FAULT_ADDR, 8, mmu::faultAddr)
                .readOnly("MMU_FAULT_COUNT", REG_MMU_FAULT_COUNT, 8, mmu::faultCount);
        engines.forEach(e -> e.addRegisters(b));
        this.registers = b.build();
    }

    RegisterBlock registers() {
        return registers;
    }

    void start() {
        engines.forEach(Engine::start);
    }

    private long status() {
        long s = 0;
        for (Engine e : engines) {
            s |= (e.busy() ? 1L : 0) << (STATUS_BUSY + e.index) | (e.halted() ? 1L : 0) << (STATUS_HALTED + e.index);
        }
        return s;
    }

    private void invalidate(long value) {
        for (Engine e : engines) {
            if (value == TLB_INVALIDATE_ALL) {
                e.tlb().invalidateAll();
            } else if (value >= 0 && value < VM_COUNT) {
                e.tlb().invalidate((int) value);
            }
        }
    }

    /**
     * Engine {@code engine}'s counters ({@link GpuRegs#ENGINE_NAMES} order).
     *
     * @throws ErrnoException {@code EINVAL} for an engine index outside 0..2
     */
    public EngineStats stats(int engine) {
        return engine(engine).stats();
    }

    /** Translations cached in engine {@code engine}'s TLB. */
    public int tlbEntries(int engine) {
        return engine(engine).tlb().size();
    }

    /** Bytes of VRAM beyond the BAR window committed so far (2 MiB per chunk written). */
    public long hiddenVramCommitted() {
        return vram.hiddenCommitted();
    }

    /** The engines' device threads, started at realize and joined by {@link #quiesce()} and {@link #remove()}. */
    public List<Thread> threads() {
        return engines.stream().map(Engine::thread).toList();
    }

    private Engine engine(int engine) {
        if (engine < 0 || engine >= ENGINE_COUNT) {
            throw new ErrnoException(Errno.EINVAL, "GPU engine " + engine + " outside 0.." + (ENGINE_COUNT - 1));
        }
        return engines.get(engine);
    }

    /** Power-on: every engine idle and disabled (a running job aborted), VM roots 0, TLBs empty, no fault latched. */
    @Override
    public synchronized void reset(PciReset kind) {
        engines.forEach(Engine::powerOn);
        mmu.reset();
    }

    /** Stops the engines' threads: no DMA or interrupt follows. */
    @Override
    public synchronized void quiesce() {
        engines.forEach(Engine::stop);
    }

    /** Stops the threads if still running and frees the VRAM beyond the window. */
    @Override
    public synchronized void remove() {
        engines.forEach(Engine::stop);
        if (!gone) {
            gone = true;
            vram.release();
        }
    }
}
