package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The IOMMU and dma-debug state in JDK types ({@code Map}, {@code List}, {@code String}, boxed numbers) for
 * {@link MachineQuery}: what {@code /sys/kernel/iommu_groups} and {@code /sys/kernel/debug/dma-api} would tell a
 * script.
 */
final class QueryMaps {
    private QueryMaps() {
    }

    /** {@code enabled}, {@code groups}, {@code domains}, {@code faults}. */
    static Map<String, Object> iommu(Iommu iommu) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("enabled", iommu.enabled());
        m.put("groups", iommu.groups().stream().map(QueryMaps::group).toList());
        m.put("domains", iommu.domains().stream().map(QueryMaps::domain).toList());
        m.put("faults", iommu.faults().stream().map(QueryMaps::fault).toList());
        return m;
    }

    private static Map<String, Object> group(IommuGroup g) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", g.id());
        m.put("devices", g.devices().stream().map(Device::name).toList());
        m.put("domain", g.domain().name());
        m.put("defaultDomain", g.defaultDomain().name());
        return m;
    }

    private static Map<String, Object> domain(IommuDomain d) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", d.name());
        m.put("type", d.type().name());
        m.put("mappedBytes", d.mappedBytes());
        m.put("groups", d.groups().stream().map(IommuGroup::id).toList());
        return m;
    }

    private static Map<String, Object> fault(IommuFault f) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("device", f.device());
        m.put("domainId", f.domainId());
        m.put("iova", f.iova());
        m.put("write", f.write());
        m.put("reason", f.reason());
        return m;
    }

    /** {@code enabled}, {@code activeMappings}, {@code reports}. */
    static Map<String, Object> dmaDebug(Machine machine) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("enabled", machine.dmaDebug().enabled());
        m.put("activeMappings", machine.activeDmaMappings());
        m.put("reports", machine.dmaDebug().reports().stream().map(QueryMaps::report).toList());
        return m;
    }

    private static Map<String, Object> report(DmaDebugReport r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("kind", r.kind().name());
        m.put("device", r.device());
        m.put("address", r.address());
        m.put("size", r.size());
        m.put("message", r.message());
        return m;
    }
}
