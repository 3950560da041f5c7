package dev.dmaplane.launcher;

import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Reads the JDK-typed answers of the runtime's query service ({@code status}, {@code trace}, {@code iommu}), for
 * the demo and the integration tests, which cannot see the framework's classes.
 */
final class MachineState {
    private MachineState() {
    }

    /** The devices {@code driver} is bound to (empty if it is not registered). */
    @SuppressWarnings("unchecked")
    static List<String> boundTo(Map<String, Object> status, String driver) {
        for (Map<String, Object> d : (List<Map<String, Object>>) status.get("drivers")) {
            if (driver.equals(d.get("name"))) {
                return (List<String>) d.get("bound");
            }
        }
        return List.of();
    }

    /** The names of the registered drivers. */
    @SuppressWarnings("unchecked")
    static List<String> driverNames(Map<String, Object> status) {
        return ((List<Map<String, Object>>) status.get("drivers")).stream().map(d -> (String) d.get("name")).toList();
    }

    /** Every device name, in the order the machine added them. */
    @SuppressWarnings("unchecked")
    static List<String> deviceNames(Map<String, Object> status) {
        return ((List<Map<String, Object>>) status.get("devices")).stream().map(d -> (String) d.get("name")).toList();
    }

    /** Device-managed resources {@code device} holds. */
    @SuppressWarnings("unchecked")
    static int devres(Map<String, Object> status, String device) {
        for (Map<String, Object> d : (List<Map<String, Object>>) status.get("devices")) {
            if (device.equals(d.get("name"))) {
                return (Integer) d.get("devres");
            }
        }
        return 0;
    }

    /** Whether an event of {@code kind} for {@code device} with {@code detail} came after {@code afterSeq}. */
    static boolean traced(List<Map<String, Object>> trace, long afterSeq, String kind, String device, String detail) {
        return trace.stream().anyMatch(e -> (Long) e.get("seq") > afterSeq && kind.equals(e.get("kind"))
                && device.equals(e.get("device")) && detail.equals(e.get("detail")));
    }

    /** The events of {@code device} of any of {@code kinds} after {@code afterSeq}, oldest first. */
    static List<Map<String, Object>> events(List<Map<String, Object>> trace, long afterSeq, String device, List<String> kinds) {
        return trace.stream().filter(e -> (Long) e.get("seq") > afterSeq && device.equals(e.get("device"))
                && kinds.contains((String) e.get("kind"))).toList();
    }

    /** The members of the IOMMU group that holds {@code device}, sorted; empty if it is in none. */
    @SuppressWarnings("unchecked")
    static List<String> groupMembers(Map<String, Object> iommu, String device) {
        return group(iommu, device).map(g -> ((List<String>) g.get("devices")).stream().sorted().toList()).orElse(List.of());
    }

    /** The IOMMU group (as a map: id, devices, domain, defaultDomain) that holds {@code device}. */
    @SuppressWarnings("unchecked")
    static Optional<Map<String, Object>> group(Map<String, Object> iommu, String device) {
        return ((List<Map<String, Object>>) iommu.get("groups")).stream()
                .filter(g -> ((List<String>) g.get("devices")).contains(device)).findFirst();
    }

    /** Bytes mapped in domain {@code name}, or -1 if there is no such domain. */
    @SuppressWarnings("unchecked")
    static long mappedBytes(Map<String, Object> iommu, String domain) {
        return ((List<Map<String, Object>>) iommu.get("domains")).stream().filter(d -> domain.equals(d.get("name")))
                .mapToLong(d -> (Long) d.get("mappedBytes")).findFirst().orElse(-1);
    }

    /** The recorded IOMMU faults (maps: device, domainId, iova, write, reason). */
    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> faults(Map<String, Object> iommu) {
        return (List<Map<String, Object>>) iommu.get("faults");
    }

    /** dma-debug reports of {@code kind}. */
    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> reports(Map<String, Object> dmaDebug, String kind) {
        return ((List<Map<String, Object>>) dmaDebug.get("reports")).stream().filter(r -> kind.equals(r.get("kind"))).toList();
    }
}
