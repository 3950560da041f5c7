package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.iommu.IoPageTable;

import java.util.List;
import java.util.stream.Collectors;

/**
 * The IOMMU as {@code /sys/kernel/iommu_groups} and the IOMMU debugfs show it: groups with their devices and
 * the domain each is attached to, domains with their type and mapped bytes, the page tables' mappings, and the
 * recorded faults ({@code report_iommu_fault}).
 */
final class IommuView {
    private IommuView() {
    }

    /** Groups (devices, bound drivers, current and default domain, owner), then domains, then the fault count. */
    static String overview(Iommu iommu) {
        if (!iommu.enabled()) {
            return "IOMMU off: devices DMA with physical addresses (no groups, no domains)";
        }
        StringBuilder sb = new StringBuilder();
        sb.append("IOMMU on, default domain type ").append(iommu.defaultDomainType().name().toLowerCase()).append('\n');
        for (IommuGroup g : iommu.groups()) {
            IommuDomain cur = g.domain();
            sb.append("group ").append(g.id()).append(": domain ").append(cur.name());
            sb.append(cur == g.defaultDomain() ? " (default)" : " (default " + g.defaultDomain().name() + ")");
            Object owner = g.owner();
            sb.append(owner == null ? "" : ", owned by " + owner).append('\n');
            for (Device d : g.devices()) {
                sb.append(String.format("  %-13s %s%n", d.name(), d.driver().map(Driver::name).orElse("-")));
            }
        }
        sb.append(String.format("%-12s %-9s %12s  %s%n", "DOMAIN", "TYPE", "MAPPED", "GROUPS"));
        for (IommuDomain d : iommu.domains()) {
            String groups = d.groups().stream().map(g -> String.valueOf(g.id())).collect(Collectors.joining(","));
            sb.append(String.format("%-12s %-9s %12s  %s%n", d.name(), d.type().name().toLowerCase(),
                    MachineReport.bytes(d.mappedBytes()), groups.isEmpty() ? "-" : groups));
        }
        int faults = iommu.faults().size();
        sb.append("faults: ").append(faults).append(faults == 0 ? "" : " (dmaplane:iommu faults lists them)");
        return sb.toString();
    }

    /** The recorded faults, oldest first. */
    static String faults(Iommu iommu) {
        List<IommuFault> faults = iommu.faults();
        if (faults.isEmpty()) {
            return "no IOMMU faults";
        }
        return faults.stream().map(IommuFault::toString).collect(Collectors.joining("\n"));
    }

    /** Every mapping of every paging domain, merged as the debugfs page-table dump merges them. */
    static String mappings(Iommu iommu) {
        StringBuilder sb = new StringBuilder();
        for (IommuDomain d : iommu.domains()) {
            if (!d.type().paging() || d.mappedBytes() == 0) {
                continue;
            }
            sb.append(d.name()).append(" (groups ").append(d.groups().stream().map(g -> String.valueOf(g.id()))
                    .collect(Collectors.joining(","))).append("): ").append(MachineReport.bytes(d.mappedBytes())).append('\n');
            d.pageTable().forEachMapping((iova, phys, size, prot) -> sb.append(String.format(
                    "  iova 0x%09x-0x%09x -> phys 0x%09x  %-8s %s%s%n", iova, iova + size - 1, phys,
                    MachineReport.bytes(size), (prot & IoPageTable.PROT_READ) != 0 ? "r" : "-",
                    (prot & IoPageTable.PROT_WRITE) != 0 ? "w" : "-")));
        }
        return sb.isEmpty() ? "no IOVA mapped in any domain" : sb.toString().stripTrailing();
    }
}
