package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

/**
 * A machine of its own with the Soft-RoCE driver bound, for plain-classpath use. Kept apart from {@link Perftest}
 * so that the bundle (which imports the driver package optionally: it is private to the driver bundle) loads
 * without it.
 */
final class Standalone {
    private Standalone() {
    }

    static PerfResult run(PerfConfig cfg) {
        Machine machine = Machine.bootDefault();
        RdmaCore core = new RdmaCore(machine.tracer());
        SoftRoceDriver driver = new SoftRoceDriver(core);
        try {
            machine.devices().registerDriver(driver);
            return Perftest.run(machine, core, cfg);
        } finally {
            if (machine.devices().drivers().contains(driver)) {
                machine.devices().unregisterDriver(driver);
            }
            core.close();
            machine.close();
        }
    }
}
