package dev.dmaplane.runtime.impl;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.ResvFence;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The listing commands' {@code -j} output: one line of JSON, as iproute2's {@code rdma -j} and {@code ip -j} print
 * it, so scripts pipe it to {@code jq}. Maps keep their keys in a fixed order; absent values are {@code null}.
 */
final class JsonViews {
    private static final Logger LOG = LoggerFactory.getLogger(JsonViews.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private JsonViews() {
    }

    /** {@code value} (maps, lists, strings, numbers, booleans, null) as one line of JSON. */
    static String write(Object value) {
        try {
            return JSON.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            LOG.error("a JSON view could not be written", e);
            throw new ErrnoException(Errno.EIO, "cannot write JSON: " + e.getOriginalMessage(), e);
        }
    }

    /** {@code dmaplane:devices -j}: every device with its bus, driver, devres count, parent and children. */
    static List<Map<String, Object>> devices(Machine machine) {
        return machine.devices().devices().stream().map(d -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", d.name());
            m.put("bus", d.bus().name().toLowerCase(Locale.ROOT));
            m.put("driver", d.driver().map(Driver::name).orElse(null));
            m.put("devres", d.devres().size());
            m.put("description", MachineReport.describe(d));
            m.put("parent", d.parent().map(Device::name).orElse(null));
            m.put("children", d.children().stream().map(Device::name).toList());
            return m;
        }).toList();
    }

    /** {@code dmaplane:drivers -j}: every driver with its bundle, ID table rows and bound devices. */
    static List<Map<String, Object>> drivers(Machine machine, List<DriverBinder.Registered> fromBundles) {
        return machine.devices().drivers().stream().map(d -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", d.name());
            m.put("bundle", fromBundles.stream().filter(r -> r.driver() == d).map(DriverBinder.Registered::bundle)
                    .findFirst().orElse(null));
            m.put("matches", d.matchTable().entries().stream().map(MachineReport::describe).toList());
            m.put("bound", machine.devices().boundTo(d).stream().map(Device::name).toList());
            return m;
        }).toList();
    }

    /** {@code dmaplane:iommu -j}: the query service's IOMMU map with the default domain type. */
    static Map<String, Object> iommu(Machine machine) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("defaultDomainType", machine.iommu().defaultDomainType().name().toLowerCase(Locale.ROOT));
        m.putAll(QueryMaps.iommu(machine.iommu()));
        return m;
    }

    /** {@code dmaplane:dmadebug -j}: the query service's dma-debug map with the active mappings per device. */
    static Map<String, Object> dmaDebug(Machine machine) {
        Map<String, Object> m = QueryMaps.dmaDebug(machine);
        Map<String, Object> perDevice = new LinkedHashMap<>();
        for (Device d : machine.devices().devices()) {
            int n = machine.activeDmaMappings(d);
            if (n > 0) {
                perDevice.put(d.name(), n);
            }
        }
        m.put("activeMappingsByDevice", perDevice);
        return m;
    }

    /** {@code dmaplane:memory -j}: RAM, page frames and DMA mappings in bytes and counts. */
    static Map<String, Object> memory(Machine machine) {
        HostMemory mem = machine.memory();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ramBytes", mem.size());
        m.put("pageSize", HostMemory.PAGE_SIZE);
        m.put("totalFrames", mem.totalFrames());
        m.put("allocatedFrames", mem.allocatedFrames());
        m.put("residentBytes", mem.residentBytes());
        m.put("pinnedFrames", mem.pinnedFrames());
        m.put("activeDmaMappings", machine.activeDmaMappings());
        return m;
    }

    /** {@code dmaplane:dmabuf -j}: the bufinfo fields of every live buffer, with fences and attachments. */
    static List<Map<String, Object>> dmaBufs(DmaBufs bufs) {
        return bufs.list().stream().filter(b -> b.refCount() > 0).map(JsonViews::dmaBuf).toList();
    }

    private static Map<String, Object> dmaBuf(DmaBuf b) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ino", b.ino());
        m.put("size", b.size());
        m.put("count", b.refCount());
        m.put("exporter", b.exporterName());
        m.put("name", b.name());
        m.put("dynamic", b.isDynamic());
        m.put("revoked", b.isRevoked());
        m.put("fences", b.resv().entries().stream().map(JsonViews::fence).toList());
        m.put("attachments", b.attachments().stream().map(JsonViews::attachment).toList());
        return m;
    }

    private static Map<String, Object> fence(ResvFence f) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("usage", f.usage().name().toLowerCase(Locale.ROOT));
        m.put("driver", f.fence().context().driverName());
        m.put("timeline", f.fence().context().timelineName());
        m.put("seqno", f.fence().seqno());
        m.put("signalled", f.fence().isSignaled());
        return m;
    }

    private static Map<String, Object> attachment(Attachment a) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("device", a.device().name());
        m.put("dynamic", a.isDynamic());
        m.put("peer2peer", a.peer2peer());
        m.put("pins", a.pinCount());
        m.put("mappings", a.mappings().size());
        return m;
    }

    /** {@code dmaplane:lspci -j}: what {@code lspci -nnk} says of every function, with its IOMMU group. */
    static List<Map<String, Object>> lspci(Machine machine) {
        return machine.pci().functions().stream().map(f -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("slot", f.name());
            m.put("class", String.format("%06x", f.classCode()));
            m.put("vendor", String.format("%04x", f.vendorId()));
            m.put("device", String.format("%04x", f.deviceId()));
            m.put("subsystemVendor", String.format("%04x", f.subsystemVendorId()));
            m.put("subsystemDevice", String.format("%04x", f.subsystemId()));
            m.put("revision", f.revision());
            m.put("iommuGroup", machine.iommu().groupOf(f).map(IommuGroup::id).orElse(null));
            m.put("driver", f.driver().map(Driver::name).orElse(null));
            m.put("model", f.model().orElse(null));
            m.put("absent", f.absence().orElse(null));
            m.put("parent", f.upstreamBridge().map(PciFunction::name).orElse(null));
            return m;
        }).toList();
    }
}
