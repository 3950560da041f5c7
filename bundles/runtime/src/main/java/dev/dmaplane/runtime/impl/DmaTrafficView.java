package dev.dmaplane.runtime.impl;

import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;

import java.util.Map;

/**
 * The bus traffic of device DMA, as {@code perf stat -e uncore_iio_*} shows an IIO PMU's inbound counters: bytes
 * each function's DMA read from and wrote to host RAM and to peers' BARs, and its AtomicOps, then the machine's
 * total (which keeps what devices that left moved).
 */
final class DmaTrafficView {
    private static final String ROW = "%-14s %16s %16s %16s %16s %10s%n";

    private DmaTrafficView() {
    }

    /** One line per present function that moved anything, then the machine's total. */
    static String describe(Machine machine) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(ROW, "DEVICE", "RAM READ", "RAM WRITTEN", "PEER READ", "PEER WRITTEN", "ATOMICS"));
        for (PciFunction fn : machine.pci().functions()) {
            if (fn.isPresent()) {
                DmaTraffic t = fn.dma().traffic();
                if (!t.equals(DmaTraffic.ZERO)) {
                    row(sb, fn.name(), t);
                }
            }
        }
        row(sb, "machine", machine.dmaTraffic());
        return sb.toString().stripTrailing();
    }

    private static void row(StringBuilder sb, String name, DmaTraffic t) {
        sb.append(String.format(ROW, name, t.ramReadBytes(), t.ramWriteBytes(), t.peerReadBytes(), t.peerWriteBytes(),
                t.atomics()));
    }

    /** The machine's total under the status keys {@code dmaRamReadBytes} ... {@code dmaAtomics}. */
    static void putStatus(Machine machine, Map<String, Object> status) {
        DmaTraffic t = machine.dmaTraffic();
        status.put("dmaRamReadBytes", t.ramReadBytes());
        status.put("dmaRamWriteBytes", t.ramWriteBytes());
        status.put("dmaPeerReadBytes", t.peerReadBytes());
        status.put("dmaPeerWriteBytes", t.peerWriteBytes());
        status.put("dmaAtomics", t.atomics());
    }
}
