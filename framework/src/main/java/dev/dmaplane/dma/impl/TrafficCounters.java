package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaTraffic;

import java.util.concurrent.atomic.LongAdder;

/**
 * Counters of the traffic one requester, or the whole machine, puts on the bus (an IIO uncore PMU's inbound
 * counters, {@code arch/x86/events/intel/uncore_snbep.c}); each update also goes to the machine's counters.
 * Updated once per transaction run, never per byte; readings are sums of {@link LongAdder}s, so a reading taken
 * while transfers run may split a run's update between its fields.
 */
final class TrafficCounters {
    private final LongAdder ramRead = new LongAdder();
    private final LongAdder ramWrite = new LongAdder();
    private final LongAdder peerRead = new LongAdder();
    private final LongAdder peerWrite = new LongAdder();
    private final LongAdder atomics = new LongAdder();
    /** The machine's counters, which every update also reaches; null for the machine's own. */
    private final TrafficCounters machine;

    TrafficCounters(TrafficCounters machine) {
        this.machine = machine;
    }

    /** Bytes that landed in RAM and in peers' memory, read or written. */
    void moved(boolean write, long ramBytes, long peerBytes) {
        if (ramBytes != 0) {
            (write ? ramWrite : ramRead).add(ramBytes);
        }
        if (peerBytes != 0) {
            (write ? peerWrite : peerRead).add(peerBytes);
        }
        if (machine != null) {
            machine.moved(write, ramBytes, peerBytes);
        }
    }

    /** One AtomicOp completed. */
    void atomic() {
        atomics.increment();
        if (machine != null) {
            machine.atomic();
        }
    }

    DmaTraffic snapshot() {
        return new DmaTraffic(ramRead.sum(), ramWrite.sum(), peerRead.sum(), peerWrite.sum(), atomics.sum());
    }
}
