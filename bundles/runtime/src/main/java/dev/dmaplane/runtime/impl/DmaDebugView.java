package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDebug;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.machine.Machine;

import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * dma-debug's state ({@code /sys/kernel/debug/dma-api/}): whether it is on, the live DMA mappings per device
 * ({@code num_free_entries} seen from the other side), and its findings with the mapping sites.
 */
final class DmaDebugView {
    private DmaDebugView() {
    }

    /**
     * The summary: on/off, active mappings in total and per device, findings counted by kind, then each finding
     * on one line, or with the stack of the call that made the mapping when {@code withSites}.
     */
    static String describe(Machine machine, boolean withSites) {
        DmaDebug debug = machine.dmaDebug();
        List<DmaDebugReport> reports = debug.reports();
        StringBuilder sb = new StringBuilder();
        sb.append("dma-debug ").append(debug.enabled() ? "on" : "off").append(": ")
                .append(machine.activeDmaMappings()).append(" active DMA mappings, ")
                .append(reports.size()).append(" reports\n");
        for (Device d : machine.devices().devices()) {
            int n = machine.activeDmaMappings(d);
            if (n > 0) {
                sb.append(String.format("  %-13s %d active mappings%n", d.name(), n));
            }
        }
        Map<DmaDebugReport.Kind, Integer> byKind = new EnumMap<>(DmaDebugReport.Kind.class);
        reports.forEach(r -> byKind.merge(r.kind(), 1, Integer::sum));
        if (!byKind.isEmpty()) {
            sb.append("  by kind:");
            byKind.forEach((k, n) -> sb.append(' ').append(k).append('=').append(n));
            sb.append('\n');
        }
        for (DmaDebugReport r : reports) {
            String text = withSites ? r.describe() : "DMA-API: " + r.device() + ": " + r.message();
            sb.append("  ").append(r.kind()).append(": ").append(text.replace("\n", "\n  ")).append('\n');
        }
        return sb.toString().stripTrailing();
    }
}
