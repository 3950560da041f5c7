package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.Tracer;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * One engine's ring ({@code struct amdgpu_ring} with its {@code amdgpu_fence_driver}): descriptors in coherent host
 * memory, a seqno per descriptor, the doorbell, the fence write-back word the engine writes after each descriptor and
 * the hardware {@link FenceContext} whose fences {@link #reap()} signals in seqno order, as
 * {@code amdgpu_fence_process} does. A halted engine's oldest outstanding job is the one that faulted.
 * <p>
 * A job leaves the ring only once the write-back word reached its last seqno <em>and</em> {@code RING_HEAD} passed
 * its descriptors: the datasheet ({@code GpuRegs}) has the engine write the fence before it advances the head, and
 * an engine stopped in between (model removal quiesces it) never advances it. Its hardware fence returns the job's
 * scheduler credits, so signalling it on the write-back alone would let the scheduler fill slots the head still
 * covers, and {@link #emit} would find no room.
 * <p>
 * Locking: one lock for the ring state; fences are signalled after it is released.
 */
final class Ring {
    /**
     * A job on the ring: the seqno of its last descriptor, the ring index just past that descriptor (the tail the
     * doorbell wrote) and its hardware fence.
     */
    record Inflight(GpuJob job, long lastSeqno, long end, Fence fence) {
    }

    /** What {@link #reap()} found: jobs done in order, and the faulting job with its fault, if the engine halted. */
    record Reaped(List<Inflight> done, Inflight faulted, HwFault fault) {
    }

    /** What {@link #reset} found: jobs done before the reset, in order, and the jobs the reset lost. */
    record Reset(List<Inflight> done, List<Inflight> lost) {
    }

    /**
     * What a register of a device that left the bus reads ({@code pci_device_is_present} is false, amdgpu's
     * {@code amdgpu_device_skip_hw_access}): nothing is emitted and no halt is believed.
     */
    private static final long GONE = -1L;

    private final String name;
    private final int engine;
    private final Bar.Mmio regs;
    private final int entries;
    private final CoherentBuffer memory;
    private final FenceContext hwFences;
    private final ReentrantLock lock = new ReentrantLock();
    private final ArrayDeque<Inflight> inflight = new ArrayDeque<>();
    private long tail;
    private long seqno;
    /** The engine halted and its faulting job was taken; cleared by {@link #reset}. */
    private boolean faulted;

    /** Allocates the ring and its fence word ({@code amdgpu_ring_init}); the caller frees it with {@link #free}. */
    Ring(PciFunction fn, Bar.Mmio regs, int engine, int entries, Tracer tracer) {
        this.name = fn.bdf() + " " + ENGINE_NAMES[engine];
        this.engine = engine;
        this.regs = regs;
        this.entries = entries;
        this.memory = fn.dma().allocCoherent((long) entries * DESC_SIZE + DESC_SIZE);
        this.hwFences = FenceContext.allocate("gpu", name, tracer);
    }

    String name() {
        return name;
    }

    int entries() {
        return entries;
    }

    CoherentBuffer memory() {
        return memory;
    }

    private long reg(int offset) {
        return regs.read(engineBase(engine) + offset, 8);
    }

    private void setReg(int offset, long value) {
        regs.write(engineBase(engine) + offset, 8, value);
    }

    private long fenceWordAddress() {
        return memory.dmaAddress() + (long) entries * DESC_SIZE;
    }

    /** Programs base, size, fence address and vector and enables the engine ({@code amdgpu_ring_test_helper}'s setup). */
    void start(int vector) {
        lock.lock();
        try {
            setReg(RING_CTRL, CTRL_RESET);
            setReg(RING_BASE, memory.dmaAddress() | APERTURE_SYSTEM);
            setReg(RING_SIZE, entries);
            setReg(RING_FENCE_ADDR, fenceWordAddress() | APERTURE_SYSTEM);
            setReg(RING_IRQ_VECTOR, vector);
            setReg(RING_CTRL, CTRL_ENABLE);
            ErrnoException.check(reg(RING_CTRL) == CTRL_ENABLE, Errno.EIO, name + ": CTRL reads "
                    + reg(RING_CTRL) + " after enable");
            tail = reg(RING_TAIL);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Writes {@code job}'s descriptors and rings the doorbell ({@code amdgpu_ring_commit}); the returned hardware
     * fence signals once the engine wrote its last seqno. {@code EBUSY} if the ring has no room (the scheduler's
     * credits prevent it).
     */
    Fence emit(GpuJob job) {
        lock.lock();
        try {
            long head = reg(RING_HEAD);
            ErrnoException.check(head != GONE, Errno.ECANCELED, name + ": RING_HEAD reads all ones, the GPU is gone;"
                    + " job not run");
            int n = job.commands().size();
            ErrnoException.check(tail - head + n <= entries, Errno.EBUSY, name + ": " + n + " descriptors do not fit,"
                    + " head " + head + " tail " + tail + " of " + entries);
            for (int i = 0; i < n; i++) { // one interrupt per job, on its last descriptor
                MemorySegment d = memory.cpu().asSlice((tail & (entries - 1)) * DESC_SIZE, DESC_SIZE);
                job.commands().get(i).encode(d, ++seqno, i == n - 1);
                tail++;
            }
            Fence fence = hwFences.createFence();
            inflight.addLast(new Inflight(job, seqno, tail, fence));
            VarHandle.releaseFence(); // wmb(): descriptors visible before the doorbell
            setReg(RING_TAIL, tail);
            return fence;
        } finally {
            lock.unlock();
        }
    }

    /** Whether the engine halted on a fault that {@link #reset} has not cleared yet. */
    boolean faulted() {
        lock.lock();
        try {
            return faulted;
        } finally {
            lock.unlock();
        }
    }

    boolean idle() {
        lock.lock();
        try {
            return inflight.isEmpty();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Takes the jobs whose last seqno the engine wrote back and whose descriptors the head passed, and, if the
     * engine halted, the oldest job left as the faulting one with the fault registers ({@code amdgpu_fence_process}, then the fault handler). The caller
     * signals the fences. A halt is reported once until {@link #reset}.
     */
    Reaped reap() {
        lock.lock();
        try {
            List<Inflight> done = takeCompleted();
            long ctrl = reg(RING_CTRL);
            if (faulted || ctrl == GONE || (ctrl & CTRL_HALTED) == 0) {
                return new Reaped(done, null, null);
            }
            faulted = true;
            long mmu = regs.read(REG_MMU_FAULT_STATUS, 8);
            long mmuAddr = 0;
            if ((mmu & MMU_FAULT_VALID) != 0 && ((mmu >>> MMU_FAULT_ENGINE_SHIFT) & 0xFF) == engine) {
                mmuAddr = regs.read(REG_MMU_FAULT_ADDR, 8);
                regs.write(REG_MMU_FAULT_STATUS, 8, 1);
            } else {
                mmu = 0;
            }
            HwFault fault = new HwFault(name, (int) reg(RING_FAULT_STATUS), reg(RING_FAULT_ADDR), mmu, mmuAddr);
            return new Reaped(done, inflight.pollFirst(), fault);
        } finally {
            lock.unlock();
        }
    }

    /** With the lock held: the jobs done, oldest first; none while the head reads {@link #GONE}. */
    private List<Inflight> takeCompleted() {
        long completed = memory.cpu().get(GpuCommand.U64, (long) entries * DESC_SIZE);
        VarHandle.acquireFence();
        long head = reg(RING_HEAD);
        List<Inflight> done = new ArrayList<>();
        while (head != GONE && !inflight.isEmpty() && inflight.peekFirst().lastSeqno() <= completed
                && inflight.peekFirst().end() <= head) {
            done.add(inflight.pollFirst());
        }
        return done;
    }

    /**
     * Resets the engine ({@code CTRL_RESET}, a per-ring reset as {@code amdgpu_ring_reset}): the running job is
     * aborted and the ring emptied; jobs that completed before it are returned first for signalling, then the ones
     * lost, whose fences the caller signals with an error. With {@code enable} the engine serves the ring again.
     */
    Reset reset(boolean enable) {
        lock.lock();
        try {
            setReg(RING_CTRL, CTRL_RESET | (enable ? CTRL_ENABLE : 0));
            List<Inflight> done = takeCompleted();
            List<Inflight> lost = new ArrayList<>(inflight);
            inflight.clear();
            faulted = false;
            tail = reg(RING_TAIL);
            return new Reset(done, lost);
        } finally {
            lock.unlock();
        }
    }

    /** Frees the ring memory; the engine must be disabled. */
    void free(PciFunction fn) {
        fn.dma().freeCoherent(memory);
    }
}
