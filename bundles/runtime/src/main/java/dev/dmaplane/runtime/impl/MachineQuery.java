package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.runtime.topo.TopologyDot;
import dev.dmaplane.trace.TraceEvent;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The machine's state in JDK types only ({@code Map}, {@code List}, {@code String}, {@code Long}), for code
 * outside the framework's class space: the launcher's demo and the integration tests run on the application
 * class path and cannot see {@link Machine}. Registered as a {@code java.util.function.Function<String, Object>}
 * with {@value #PROPERTY}{@code =machine}; the queries are:
 * <ul>
 *   <li>{@code status}: {@code Map} with {@code ramBytes},
 *       {@code allocatedFrames}, {@code residentBytes}, {@code activeDmaMappings}, {@code iommuFaults},
 *       {@code dmaDebugReports} (counts), {@code dmaRamReadBytes}, {@code dmaRamWriteBytes},
 *       {@code dmaPeerReadBytes}, {@code dmaPeerWriteBytes}, {@code dmaAtomics} (the bus traffic of all device DMA
 *       since boot, {@code Long}), {@code traceLastSeq}, {@code devices} (list of maps: {@code name},
 *       {@code bus}, {@code driver} or "", {@code devres}, {@code parent}, {@code activeDmaMappings}) and
 *       {@code drivers} (list of maps: {@code name}, {@code bound} names). Cheap enough to poll.</li>
 *   <li>{@code pinnedFrames}: {@code Long}, walks the memory sections ever used.</li>
 *   <li>{@code iommu}: {@code Map} with {@code enabled}, {@code groups} (maps: {@code id}, {@code devices},
 *       {@code domain}, {@code defaultDomain}), {@code domains} (maps: {@code name}, {@code type},
 *       {@code mappedBytes}, {@code groups}) and {@code faults} (maps: {@code device}, {@code domainId},
 *       {@code iova}, {@code write}, {@code reason}).</li>
 *   <li>{@code dmaDebug}: {@code Map} with {@code enabled}, {@code activeMappings} and {@code reports} (maps:
 *       {@code kind}, {@code device}, {@code address}, {@code size}, {@code message}).</li>
 *   <li>{@code trace}: the last {@value #TRACE_EVENTS} events as maps: {@code seq}, {@code kind},
 *       {@code device}, {@code address}, {@code length}, {@code detail}.</li>
 *   <li>{@code topology}: the machine's picture as Graphviz DOT ({@link TopologyDot}), a {@code String}.</li>
 * </ul>
 */
@Component(service = Function.class, property = MachineQuery.PROPERTY + "=machine")
public final class MachineQuery implements Function<String, Object> {
    /** Service property that marks this service. */
    public static final String PROPERTY = "dmaplane.query";
    static final int TRACE_EVENTS = 1024;

    private final Machine machine;

    @Activate
    public MachineQuery(@Reference Machine machine) {
        this.machine = machine;
    }

    @Override
    public Object apply(String query) {
        return switch (query) {
            case "status" -> status();
            case "pinnedFrames" -> machine.memory().pinnedFrames();
            case "trace" -> trace();
            case "iommu" -> QueryMaps.iommu(machine.iommu());
            case "dmaDebug" -> QueryMaps.dmaDebug(machine);
            case "topology" -> TopologyDot.render(machine);
            default -> throw new IllegalArgumentException("unknown query '" + query
                    + "'; one of status pinnedFrames trace iommu dmaDebug topology");
        };
    }

    private Map<String, Object> status() {
        HostMemory m = machine.memory();
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("ramBytes", m.size());
        s.put("allocatedFrames", m.allocatedFrames());
        s.put("residentBytes", m.residentBytes());
        s.put("activeDmaMappings", machine.activeDmaMappings());
        s.put("iommuFaults", machine.iommu().faults().size());
        s.put("dmaDebugReports", machine.dmaDebug().reports().size());
        DmaTrafficView.putStatus(machine, s);
        s.put("traceLastSeq", machine.tracer().lastSeq());
        s.put("devices", machine.devices().devices().stream().map(this::device).toList());
        s.put("drivers", machine.devices().drivers().stream().map(this::driver).toList());
        return s;
    }

    private Map<String, Object> device(Device d) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", d.name());
        m.put("bus", d.bus().name());
        m.put("driver", d.driver().map(Driver::name).orElse(""));
        m.put("devres", d.devres().size());
        m.put("parent", d.parent().map(Device::name).orElse(""));
        m.put("activeDmaMappings", machine.activeDmaMappings(d));
        return m;
    }

    private Map<String, Object> driver(Driver d) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", d.name());
        m.put("bound", machine.devices().boundTo(d).stream().map(Device::name).toList());
        return m;
    }

    private List<Map<String, Object>> trace() {
        long last = machine.tracer().lastSeq();
        return machine.tracer().since(Math.max(0, last - TRACE_EVENTS)).stream().map(MachineQuery::event).toList();
    }

    private static Map<String, Object> event(TraceEvent e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("seq", e.seq());
        m.put("kind", e.kind().name());
        m.put("device", e.device());
        m.put("address", e.address());
        m.put("length", e.length());
        m.put("detail", e.detail());
        return m;
    }
}
