package dev.dmaplane.device;

import dev.dmaplane.errno.ErrnoException;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.Deque;

/**
 * Device-managed resources ({@code devres}, the {@code devm_*} family): actions registered while a driver is
 * bound, run in reverse order after its {@code remove} or a failed probe.
 */
public final class Devres {
    private static final Logger LOG = LoggerFactory.getLogger(Devres.class);

    private record Entry(String name, Runnable release) {
    }

    private final String device;
    private final Deque<Entry> entries = new ArrayDeque<>();

    Devres(String device) {
        this.device = device;
    }

    /** Registers {@code release} to run when the current binding ends; returns a handle that runs it early. */
    public synchronized Runnable add(String name, Runnable release) {
        Entry e = new Entry(ErrnoException.requireNonNull(name, "devres name"),
                ErrnoException.requireNonNull(release, "devres release action"));
        entries.push(e);
        return () -> {
            boolean present;
            synchronized (this) {
                present = entries.remove(e);
            }
            if (present) {
                e.release().run();
            }
        };
    }

    /** Number of resources currently held. */
    public synchronized int size() {
        return entries.size();
    }

    /** Runs every release action, newest first. A throwing action is logged and the rest still run. */
    void releaseAll() {
        while (true) {
            Entry e;
            synchronized (this) {
                e = entries.poll();
            }
            if (e == null) {
                return;
            }
            try {
                e.release().run();
            } catch (RuntimeException ex) {
                LOG.error("{}: devres release '{}' failed", device, e.name(), ex);
            }
        }
    }
}
