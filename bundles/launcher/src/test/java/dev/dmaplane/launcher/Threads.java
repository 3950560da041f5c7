package dev.dmaplane.launcher;

import java.time.Duration;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.fail;

/** Checks that a test leaves no thread behind: every thread started after a snapshot must end. */
final class Threads {
    private Threads() {
    }

    static Snapshot snapshot() {
        return new Snapshot(Set.copyOf(Thread.getAllStackTraces().keySet()));
    }

    record Snapshot(Set<Thread> before) {
        /** Waits (bounded) for every thread started since the snapshot to end; fails naming the survivors. */
        void assertAllNewThreadsEnd(Duration timeout) throws InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            for (Thread t : Thread.getAllStackTraces().keySet()) {
                if (!before.contains(t)) {
                    t.join(Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
                }
            }
            List<String> alive = Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> !before.contains(t) && t.isAlive() && !jdkOwned(t))
                    .map(t -> t.getName() + (t.isDaemon() ? " (daemon)" : ""))
                    .toList();
            if (!alive.isEmpty()) {
                fail("threads still running after the framework stopped: " + alive);
            }
        }

        /** Threads the JDK or JUnit start lazily and keep for the whole JVM (not ours to stop). */
        private static boolean jdkOwned(Thread t) {
            return t.getName().startsWith("ForkJoinPool.commonPool") || t.getName().equals("process reaper")
                    || t.getName().equals("Attach Listener") || t.getName().startsWith("JFR ")
                    || t.getName().startsWith("junit-jupiter-timeout-watcher");
        }
    }
}
