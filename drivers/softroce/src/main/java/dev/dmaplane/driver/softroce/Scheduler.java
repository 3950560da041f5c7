package dev.dmaplane.driver.softroce;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Who runs an {@link Engine}'s passes, as rxe runs its tasks ({@code rxe_task.c}, {@code rxe_run_task}): whichever
 * thread has work for the engine and finds it idle, in that thread, and the engine's own worker thread for the
 * timers. Work that arrives while another thread runs the engine is queued by the engine, and that thread runs it
 * before it lets the engine go ({@link #release}). One thread at a time runs the engine ({@link #lock}).
 */
final class Scheduler implements Runnable {
    /** Longest a thread with work waits for the worker's pass before it stores the work instead. */
    static final long WORKER_WAIT_NS = TimeUnit.MICROSECONDS.toNanos(200);
    /** Longest the worker sleeps before it looks at the timers again. */
    static final long IDLE_WAKE_NS = TimeUnit.MILLISECONDS.toNanos(50);
    /** Whether the current thread is the worker of an engine (those never wait for another engine). */
    private static final ThreadLocal<Boolean> IS_WORKER = ThreadLocal.withInitial(() -> false);

    private final Engine e;
    private final String name;
    /** Held by whoever runs the engine, and by control hooks that change QP state. */
    final ReentrantLock lock = new ReentrantLock();
    private volatile boolean running;
    /** The worker holds the engine: a thread with work waits for its pass to end instead of storing. */
    private volatile boolean workerActive;
    private Thread thread;
    /** When the worker will wake for the timers next (it looks at least every {@link #IDLE_WAKE_NS}). */
    private volatile long workerWake = System.nanoTime();

    Scheduler(Engine e, String name) {
        this.e = e;
        this.name = name;
    }

    /** Starts the worker. */
    void start() {
        running = true;
        thread = Thread.ofPlatform().name("softroce-" + name).daemon(true).start(this);
    }

    /** Stops the worker and waits for it to end. */
    void stop() {
        running = false;
        Thread t = thread;
        if (t != null) {
            LockSupport.unpark(t);
            boolean interrupted = false;
            while (t.isAlive()) {
                try {
                    t.join();
                } catch (InterruptedException ex) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Started and not stopped. */
    boolean running() {
        return running;
    }

    /** Whether the worker thread is alive. */
    boolean workerAlive() {
        Thread t = thread;
        return t != null && t.isAlive();
    }

    /** Whether the calling thread is this engine's worker. */
    boolean inWorker() {
        return Thread.currentThread() == thread;
    }

    /**
     * Takes the engine for a pass in the calling thread if it is idle, or as soon as the worker's timer pass ends
     * if the worker runs it (waiting at most {@link #WORKER_WAIT_NS}): a thread with traffic hands the worker none,
     * or the worker would end up carrying the data path with every payload copied to reach it. A pass another
     * thread runs is not waited for (two threads that deliver to each other's engines would deadlock), nor does a
     * worker wait; the caller then stores its work, and the holder runs it as it releases the engine.
     */
    boolean enterInline() {
        if (lock.tryLock()) {
            return true;
        }
        if (IS_WORKER.get()) {
            return false; // a worker never waits while it runs its own engine: no cycle of waits can form
        }
        // the worker holds the engine for its timer pass, which is short: wait for it, giving it the CPU after a
        // short spin in case it is the one waiting for a CPU. Not for longer than WORKER_WAIT_NS: the worker may
        // itself wait, for a region's lock that a deregistration holds until this thread's kept leases close.
        long deadline = 0;
        for (int spins = 0; workerActive; spins++) {
            if (spins < 100) {
                Thread.onSpinWait();
            } else if (deadline == 0) {
                deadline = System.nanoTime() + WORKER_WAIT_NS;
            } else if (System.nanoTime() - deadline > 0) {
                return false;
            } else {
                Thread.yield();
            }
            if (lock.tryLock()) {
                return true;
            }
        }
        return lock.tryLock();
    }

    /**
     * Releases the engine, then runs what was queued while it was held if nobody else took it meanwhile. With a
     * thread that queues work first and then tries to take the engine, this hands every piece of work to a thread
     * that runs it, without waking the worker: one of the two sees the other's step.
     */
    void release() {
        lock.unlock();
        runQueuedIfIdle();
    }

    /** Runs queued work in the calling thread for as long as there is some and nobody else runs the engine. */
    void runQueuedIfIdle() {
        while (e.live() && e.hasQueued() && !lock.isHeldByCurrentThread() && lock.tryLock()) {
            try {
                e.counters.inlinePasses++;
                e.pass();
            } finally {
                lock.unlock();
            }
        }
    }

    /** The worker's pass ended: it sleeps until {@code next}, the earliest timer (0: none, it looks again later). */
    void sleepUntil(long next) {
        workerWake = next != 0 ? next : System.nanoTime() + IDLE_WAKE_NS;
    }

    /** An inline pass armed a timer due at {@code due} (0: none): the worker is woken if it planned to sleep longer. */
    void wakeBy(long due) {
        if (due != 0 && due - workerWake < 0) {
            workerWake = due;
            wake();
        }
    }

    /** Wakes the worker. */
    void wake() {
        Thread t = thread;
        if (t != null) {
            LockSupport.unpark(t);
        }
    }

    @Override
    public void run() {
        IS_WORKER.set(true);
        while (e.live()) {
            lock.lock();
            workerActive = true;
            try {
                e.counters.workerPasses++;
                e.pass();
            } finally {
                workerActive = false;
                release();
            }
            if (!e.hasQueued() && e.live()) {
                LockSupport.parkNanos(this, Math.max(1, workerWake - System.nanoTime()));
            }
        }
        e.workerEnded();
    }
}
