package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaTraffic;

import java.util.concurrent.atomic.LongAdder;

/**
 * Counters of the traffic one requester puts on the bus (an IIO uncore PMU's inbound counters,
 * {@code arch/x86/events/intel/uncore_snbep.c}), updated once per call, never per byte; the machine's total is the
 * sum over its devices, so the data path pays one update per device. A reading taken while transfers run may
 * split a call's update between its fields.
 */
final class TrafficCounters {
    private final LongAdder ramRead = new LongAdder();
    private final LongAdder ramWrite = new LongAdder();
    private final LongAdder peerRead = new LongAdder();
    private final LongAdder peerWrite = new LongAdder();
    private final LongAdder atomics = new LongAdder();

    /** Bytes that landed in RAM and in peers' memory, read or written. */
    void moved(boolean write, long ramBytes, long peerBytes) {
        if (ramBytes != 0) {
            (write ? ramWrite : ramRead).add(ramBytes);
        }
        if (peerBytes != 0) {
            (write ? peerWrite : peerRead).add(peerBytes);
        }
    }

    /** One AtomicOp completed. */
    void atomic() {
        atomics.increment();
    }

    /** Adds what {@code other} counted to these counters (a departing device's traffic to the machine's). */
    void add(TrafficCounters other) {
        ramRead.add(other.ramRead.sum());
        ramWrite.add(other.ramWrite.sum());
        peerRead.add(other.peerRead.sum());
        peerWrite.add(other.peerWrite.sum());
        atomics.add(other.atomics.sum());
    }

    DmaTraffic snapshot() {
        return new DmaTraffic(ramRead.sum(), ramWrite.sum(), peerRead.sum(), peerWrite.sum(), atomics.sum());
    }

    /** The sum of what every one of {@code counters} counted. */
    static DmaTraffic sum(Iterable<TrafficCounters> counters) {
        long ramR = 0;
        long ramW = 0;
        long peerR = 0;
        long peerW = 0;
        long atomic = 0;
        for (TrafficCounters c : counters) {
            ramR += c.ramRead.sum();
            ramW += c.ramWrite.sum();
            peerR += c.peerRead.sum();
            peerW += c.peerWrite.sum();
            atomic += c.atomics.sum();
        }
        return new DmaTraffic(ramR, ramW, peerR, peerW, atomic);
    }
}
