package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.host.SoftRoceHost;

/**
 * A machine of its own with the Soft-RoCE driver bound, for plain-classpath use. Kept apart from {@link Perftest}
 * so that the bundle (which imports the driver package optionally: it is private to the driver bundle) loads
 * without it.
 */
final class Standalone {
    private Standalone() {
    }

    static PerfResult run(PerfConfig cfg) {
        try (SoftRoceHost host = SoftRoceHost.boot()) {
            return Perftest.run(host.machine(), host.core(), cfg);
        }
    }
}
