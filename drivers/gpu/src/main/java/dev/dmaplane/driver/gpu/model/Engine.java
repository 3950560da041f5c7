package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.RegisterBlock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * One engine on the generalized ring (a GPU ring as {@code drm_sched}'s {@code run_job} feeds it: amdgpu's
 * {@code amdgpu_ring}, a doorbell, a fence write-back and an interrupt), running descriptors on its own device
 * thread so a job outlives its submitter and can hang until the engine is reset. Registers are read and written
 * under {@link #lock}; a job runs without it and publishes its outcome only if no reset came in between.
 */
final class Engine implements GpuVm.Abort {
    private static final Logger LOG = LoggerFactory.getLogger(Engine.class);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** How long a reset or a stop waits for the running job to notice; jobs check between 64 KiB chunks. */
    static final long STOP_TIMEOUT_MS = 10_000;

    /** What one descriptor came to, published by {@link #finish}. */
    private record Outcome(boolean taken, int status, int vm, long seqno, long faultAddr, JobFault fault,
                           boolean interrupt, long nanos) {
    }

    final int index;
    final String name;
    private final ModelContext ctx;
    private final GpuMmu mmu;
    private final Apertures apertures;
    private final Tlb tlb = new Tlb();
    private final CommandProcessor commands;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition work = lock.newCondition();
    private final Condition idle = lock.newCondition();
    private final Condition aborts = lock.newCondition();
    private final Thread thread;

    private boolean enabled;
    private boolean halted;
    private long ringBase;
    private long ringSize;
    private long head;
    private long tail;
    private long fenceAddr;
    private long completedSeqno;
    private long irqVector;
    private long faultStatus;
    private long faultAddr;
    private long busyNanos;
    private long jobs;
    /** A descriptor is being run: {@link GpuRegs#CTRL_BUSY}; cleared when its outcome is published. */
    private boolean busy;
    /** The engine thread is inside a descriptor, its interrupt included: what a reset waits for. */
    private boolean running;
    private boolean abort;
    private boolean stopped;
    private long generation;

    Engine(int index, ModelContext ctx, GpuMmu mmu, Apertures apertures) {
        this.index = index;
        this.name = ENGINE_NAMES[index];
        this.ctx = ctx;
        this.mmu = mmu;
        this.apertures = apertures;
        this.irqVector = index;
        this.commands = new CommandProcessor(name, engineClass(), mmu, tlb, apertures, this);
        this.thread = Thread.ofPlatform().daemon().name(ctx.function().bdf() + " gpu " + name).unstarted(this::loop);
    }

    long engineClass() {
        return index == ENGINE_COMPUTE ? CLASS_COMPUTE : CLASS_COPY;
    }

    Tlb tlb() {
        return tlb;
    }

    Thread thread() {
        return thread;
    }

    void start() {
        thread.start();
    }

    /** Declares this engine's ring block in BAR0. */
    void addRegisters(RegisterBlock.Builder b) {
        int base = engineBase(index);
        b.constant(name + ".CLASS", base + RING_CLASS, 8, engineClass())
                .register(name + ".CTRL", base + RING_CTRL, 8, this::ctrl, this::control)
                .register(name + ".RING_BASE", base + RING_BASE, 8, () -> locked(() -> ringBase),
                        v -> configure(() -> ringBase = v & -DESC_SIZE))
                .register(name + ".RING_SIZE", base + RING_SIZE, 8, () -> locked(() -> ringSize), v -> configure(() -> {
                    if (v >= 2 && v <= MAX_RING_ENTRIES && Long.bitCount(v) == 1) {
                        ringSize = v;
                    }
                }))
                .readOnly(name + ".RING_HEAD", base + RING_HEAD, 8, () -> locked(() -> head))
                .register(name + ".RING_TAIL", base + RING_TAIL, 8, () -> locked(() -> tail), this::doorbell)
                .register(name + ".FENCE_ADDR", base + RING_FENCE_ADDR, 8, () -> locked(() -> fenceAddr),
                        v -> locked(() -> fenceAddr = v))
                .readOnly(name + ".COMPLETED_SEQNO", base + RING_COMPLETED_SEQNO, 8, () -> locked(() -> completedSeqno))
                .register(name + ".IRQ_VECTOR", base + RING_IRQ_VECTOR, 8, () -> locked(() -> irqVector),
                        v -> locked(() -> irqVector = v & 0x7FF))
                .readOnly(name + ".FAULT_STATUS", base + RING_FAULT_STATUS, 8, () -> locked(() -> faultStatus))
                .readOnly(name + ".FAULT_ADDR", base + RING_FAULT_ADDR, 8, () -> locked(() -> faultAddr))
                .readOnly(name + ".BUSY_NS", base + RING_BUSY_NS, 8, () -> locked(() -> busyNanos))
                .readOnly(name + ".JOBS_COMPLETED", base + RING_JOBS_COMPLETED, 8, () -> locked(() -> jobs));
    }

    /** Busy nanoseconds and descriptors ended, for fdinfo's {@code drm-engine-*}. */
    EngineStats stats() {
        return locked(() -> new EngineStats(name, busyNanos, jobs));
    }

    boolean busy() {
        return locked(() -> busy);
    }

    boolean halted() {
        return locked(() -> halted);
    }

    private long ctrl() {
        return locked(() -> (enabled ? CTRL_ENABLE : 0) | (halted ? CTRL_HALTED : 0) | (busy ? CTRL_BUSY : 0));
    }

    private void control(long value) {
        lock.lock();
        try {
            if ((value & CTRL_RESET) != 0) {
                abortRunningJob();
                halted = false;
                faultStatus = faultAddr = 0;
                head = tail;
            }
            enabled = (value & CTRL_ENABLE) != 0 && ringSize != 0;
            work.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Ring registers are taken only while the engine is disabled. */
    private void configure(Runnable set) {
        locked(() -> {
            if (!enabled) {
                set.run();
            }
            return null;
        });
    }

    /** Records the tail and wakes the engine's thread; a tail more than a ring ahead of the head halts it. */
    private void doorbell(long value) {
        lock.lock();
        try {
            tail = value;
            if (enabled && Long.compareUnsigned(value - head, ringSize) > 0) {
                halted = true;
                faultStatus = ST_BAD_DESC;
                faultAddr = value;
            }
            work.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Power-on state (FLR, bus reset): the job aborted, ring and registers zero, TLB empty; the thread runs on. */
    void powerOn() {
        lock.lock();
        try {
            abortRunningJob();
            enabled = halted = false;
            ringBase = ringSize = head = tail = fenceAddr = completedSeqno = 0;
            faultStatus = faultAddr = busyNanos = jobs = 0;
            irqVector = index;
            tlb.invalidateAll();
            tlb.resetCounters();
        } finally {
            lock.unlock();
        }
    }

    /** Stops the thread for good and joins it (quiesce, remove); no DMA or interrupt follows. */
    void stop() {
        lock.lock();
        try {
            stopped = abort = true;
            generation++;
            work.signalAll();
            aborts.signalAll();
        } finally {
            lock.unlock();
        }
        if (Thread.currentThread() == thread) {
            return;
        }
        try {
            thread.join(STOP_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            LOG.error("{}: interrupted while joining engine thread {}", ctx.function().bdf(), thread.getName(), e);
        }
        if (thread.isAlive()) {
            LOG.error("{}: engine thread {} did not stop within {} ms", ctx.function().bdf(), thread.getName(),
                    STOP_TIMEOUT_MS);
        }
    }

    /** With the lock held: the running job ends (discarded) before this returns, bounded by {@link #STOP_TIMEOUT_MS}. */
    private void abortRunningJob() {
        abort = true;
        generation++;
        aborts.signalAll();
        if (Thread.currentThread() == thread) { // a reset from the engine's own interrupt handler: its job is done
            abort = stopped;
            return;
        }
        long left = TimeUnit.MILLISECONDS.toNanos(STOP_TIMEOUT_MS);
        try {
            while (running && left > 0) {
                left = idle.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            LOG.error("{}: interrupted while resetting engine {}", ctx.function().bdf(), name, e);
        }
        if (running) {
            LOG.error("{}: engine {}'s job did not stop within {} ms of its reset", ctx.function().bdf(), name,
                    STOP_TIMEOUT_MS);
        }
        abort = stopped;
    }

    @Override
    public boolean requested() {
        return locked(() -> abort);
    }

    @Override
    public void await() {
        lock.lock();
        try {
            while (!abort) {
                aborts.await();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw JobFault.aborted();
        } finally {
            lock.unlock();
        }
    }

    private void loop() {
        MemorySegment desc = MemorySegment.ofArray(new byte[DESC_SIZE]);
        while (true) {
            long at;
            long gen;
            lock.lock();
            try {
                while (!stopped && (!enabled || halted || head == tail)) {
                    work.await();
                }
                if (stopped) {
                    return;
                }
                at = ringBase + (head & (ringSize - 1)) * DESC_SIZE;
                gen = generation;
                running = busy = true;
            } catch (InterruptedException e) {
                LOG.error("{}: engine thread {} interrupted; it stops", ctx.function().bdf(), name, e);
                return;
            } finally {
                lock.unlock();
            }
            Outcome o;
            try {
                o = runOne(at, desc);
            } catch (RuntimeException e) { // a model bug or VRAM gone under the job: the engine halts, not dies
                LOG.error("{}: engine {} failed on the descriptor at {}", ctx.function().bdf(), name,
                        String.format("%#x", at), e);
                o = new Outcome(false, ST_DEVICE_ERROR, 0, 0, at,
                        new JobFault(ST_DEVICE_ERROR, at, 0, false, "engine error: " + e), true, 0);
            }
            finish(gen, o);
        }
    }

    /** Fetches, runs and writes back the descriptor at physical address {@code at}. */
    private Outcome runOne(long at, MemorySegment desc) {
        long t0 = System.nanoTime();
        try {
            apertures.read(at, desc);
        } catch (JobFault f) {
            return new Outcome(false, f.status, 0, 0, at, f, true, System.nanoTime() - t0);
        }
        int vm = desc.get(U32, DESC_VM);
        long seqno = desc.get(U64, DESC_SEQNO);
        boolean interrupt = (desc.get(U32, DESC_FLAGS) & FLAG_INTERRUPT) != 0;
        JobFault fault = null;
        try {
            commands.execute(desc, vm);
        } catch (JobFault f) {
            if (f.status == JobFault.ABORTED) {
                return new Outcome(true, JobFault.ABORTED, vm, seqno, 0, f, false, System.nanoTime() - t0);
            }
            fault = f;
        }
        int status = fault == null ? ST_OK : fault.status;
        long addr = fault == null ? 0 : fault.address;
        try {
            if (!requested()) {
                desc.set(U32, DESC_STATUS, status);
                apertures.write(at + DESC_STATUS, desc.asSlice(DESC_STATUS, 4));
                if (status == ST_OK && fenceAddr() != 0) {
                    apertures.write(fenceAddr(), desc.asSlice(DESC_SEQNO, 8));
                }
            }
        } catch (JobFault f) {
            fault = f;
            status = f.status;
            addr = f.address;
        }
        return new Outcome(true, status, vm, seqno, addr, fault, interrupt, System.nanoTime() - t0);
    }

    private long fenceAddr() {
        return locked(() -> fenceAddr);
    }

    /** Publishes a descriptor's outcome unless a reset came during it, then raises the interrupt it asks for. */
    private void finish(long gen, Outcome o) {
        boolean raise = false;
        long vector = 0;
        lock.lock();
        try {
            busy = false;
            if (gen == generation && o.status() != JobFault.ABORTED) {
                busyNanos += o.nanos();
                if (o.taken()) {
                    head++;
                    jobs++;
                }
                if (o.status() == ST_OK) {
                    completedSeqno = o.seqno();
                } else {
                    halted = true;
                    faultStatus = o.status();
                    faultAddr = o.faultAddr();
                    LOG.debug("{}: engine {} halted: {}", ctx.function().bdf(), name, o.fault().getMessage());
                    if (o.status() == ST_PAGE_FAULT) {
                        mmu.latch(index, o.vm(), o.fault());
                    }
                }
                raise = o.interrupt() || o.status() != ST_OK;
                vector = irqVector;
            }
        } finally {
            lock.unlock();
        }
        if (raise) {
            try {
                ctx.raise((int) vector);
            } catch (ErrnoException e) {
                LOG.warn("{}: engine {}'s interrupt on vector {} lost: {}", ctx.function().bdf(), name, vector,
                        e.getMessage(), e);
            }
        }
        lock.lock();
        try {
            running = false;
            idle.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private <T> T locked(Supplier<T> read) {
        lock.lock();
        try {
            return read.get();
        } finally {
            lock.unlock();
        }
    }
}
