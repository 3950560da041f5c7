package dev.dmaplane.pci;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.MachineSpec.BarKind;
import dev.dmaplane.pci.MachineSpec.BarSpec;
import dev.dmaplane.pci.MachineSpec.FunctionSpec;
import dev.dmaplane.pci.MachineSpec.HostBridgeSpec;
import dev.dmaplane.pci.impl.BusPlan;
import dev.dmaplane.pci.impl.MmioPlan;
import dev.dmaplane.pci.impl.SpecException;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * Turns a checked, numbered hierarchy into live objects: one config space per function with firmware's bus
 * numbers, BAR addresses and bridge windows written to its registers, and BARs backed by MMIO blocks or lazily
 * allocated device memory. Nothing is left half-built: on error the device-memory arena is closed.
 */
final class TopologyBuilder {
    private TopologyBuilder() {
    }

    static PciTopology build(MachineSpec spec) {
        List<BusPlan.Host> plan = BusPlan.plan(spec);
        MmioPlan.Assignment mmio = MmioPlan.assign(plan, TopologyLoader.MMIO64_BASE,
                TopologyLoader.MMIO64_LIMIT, TopologyLoader.MMIO32_BASE, TopologyLoader.MMIO32_LIMIT);
        Map<BusPlan.Node, MmioPlan.Layout> layout = mmio.functions();
        DeviceMemoryPool pool = new DeviceMemoryPool();
        AtomicInteger configWrites = new AtomicInteger();
        // physical slot and port numbers of the downstream-facing ports, 1, 2, ... in enumeration order
        AtomicInteger slots = new AtomicInteger();
        try {
            List<HostBridge> hosts = new ArrayList<>();
            for (BusPlan.Host h : plan) {
                HostBridgeSpec hs = h.spec();
                List<ConfigSpace.Window> windows = mmio.hostWindows().get(h).stream()
                        .map(r -> new ConfigSpace.Window(r.base(), r.limit())).toList();
                HostBridge hb = new HostBridge(hs.domain(),
                        hs.name().orElse(String.format("pci%04x:%02x", hs.domain(), hs.rootBus())), hs.p2pAllowed(),
                        windows);
                PciBus root = new PciBus(hb, hs.rootBus(), null, null);
                hb.setRootBus(root);
                for (BusPlan.Node n : h.children()) {
                    add(n, root, hb, layout, pool, configWrites, slots);
                }
                hosts.add(hb);
            }
            return new PciTopology(spec, hosts, pool, configWrites);
        } catch (RuntimeException e) {
            pool.close();
            throw e;
        }
    }

    /** A serial as deterministic as the machine file: vendor, device, then the function's domain and routing ID. */
    private static long defaultSerial(FunctionSpec s) {
        return (long) s.vendorId() << 48 | (long) s.deviceId() << 32 | (long) s.bdf().domain() << 16
                | s.bdf().requesterId();
    }

    private static void add(BusPlan.Node n, PciBus bus, HostBridge hb, Map<BusPlan.Node, MmioPlan.Layout> layout,
                            DeviceMemoryPool pool, AtomicInteger configWrites, AtomicInteger slots) {
        FunctionSpec s = n.spec();
        ConfigSpace cs;
        List<Bar> bars = new ArrayList<>();
        try {
            ConfigSpace.Builder b = ConfigSpace.builder(s.vendorId(), s.deviceId(), s.classCode())
                    .revision(s.revision())
                    .multifunction(s.multifunction() || s.bdf().function() > 0)
                    .express(s.type())
                    .writeCounter(configWrites);
            if (s.type() == PciPortType.ROOT_PORT || s.type() == PciPortType.DOWNSTREAM) {
                int number = slots.incrementAndGet();
                b.portNumber(number).slotNumber(number);
            }
            if (s.type().isBridge()) {
                b.busNumbers(n.primary(), n.secondary(), n.subordinate());
            } else {
                b.subsystem(s.subsystemVendorId(), s.subsystemId());
            }
            for (BarSpec bs : s.bars()) {
                b.bar(bs.index(), bs.size(), bs.is64Bit(), bs.prefetchable());
            }
            s.msix().ifPresent(m -> b.msix(m.vectors(), m.bar(), m.tableOffset(), m.pbaOffset()));
            s.msi().ifPresent(m -> b.msi(m.vectors(), m.is64Bit(), m.perVectorMask()));
            s.acs().ifPresent(a -> b.acs(a.capability(), a.control()));
            MachineSpec.ExpressSpec e = s.express();
            b.aer(e.aer()).link(e.linkSpeed(), e.linkWidth()).serial(e.serial().orElse(defaultSerial(s)));
            cs = b.build();
            MmioPlan.Layout l = layout.get(n);
            for (BarSpec bs : s.bars()) {
                String owner = s.bdf() + " BAR" + bs.index();
                Bar.Backing backing = bs.kind() == BarKind.MMIO ? new Bar.Mmio(bs.size(), owner, cs, bs.index())
                        : new Bar.Memory(bs.size(), owner, pool);
                bars.add(new Bar(bs.index(), bs.size(), bs.is64Bit(), bs.prefetchable(), cs, backing));
                long addr = l.bars().get(bs.index());
                cs.write(BASE_ADDRESS_0 + 4 * bs.index(), 4, (int) addr);
                if (bs.is64Bit()) {
                    cs.write(BASE_ADDRESS_0 + 4 * (bs.index() + 1), 4, (int) (addr >>> 32));
                }
            }
            l.memoryWindow().ifPresent(w -> {
                cs.write(MEMORY_BASE, 2, (int) (w.base() >>> 16) & 0xFFF0);
                cs.write(MEMORY_LIMIT, 2, (int) (w.limit() >>> 16) & 0xFFF0);
            });
            l.prefetchableWindow().ifPresent(w -> {
                cs.write(PREF_MEMORY_BASE, 2, (int) (w.base() >>> 16) & 0xFFF0);
                cs.write(PREF_MEMORY_LIMIT, 2, (int) (w.limit() >>> 16) & 0xFFF0);
                cs.write(PREF_BASE_UPPER32, 4, (int) (w.base() >>> 32));
                cs.write(PREF_LIMIT_UPPER32, 4, (int) (w.limit() >>> 32));
            });
            // as firmware leaves a machine: memory decoding on where it assigned BARs, and bridges forwarding both
            // ways (Memory Space Enable for their windows, Bus Master Enable for requests from below)
            if (s.type().isBridge()) {
                cs.write(COMMAND, 2, cs.command() | COMMAND_MEMORY | COMMAND_MASTER);
            } else if (!s.bars().isEmpty()) {
                cs.write(COMMAND, 2, cs.command() | COMMAND_MEMORY);
            }
        } catch (ErrnoException e) {
            String msg = e.getMessage();
            String prefix = e.errno().name() + ": ";
            throw SpecException.at(e.errno(), n.path(), n.path() + " (" + s.bdf() + "): "
                    + (msg.startsWith(prefix) ? msg.substring(prefix.length()) : msg), e);
        }
        cs.captureFirmwareState();
        PciFunction fn = new PciFunction(s.bdf(), bus, cs, bars, s.model().orElse(null), s.properties());
        bus.addDevice(fn);
        if (n.isBridge()) {
            PciBus child = new PciBus(hb, n.secondary(), fn, bus);
            bus.addChild(child);
            fn.setSubordinate(child);
            for (BusPlan.Node c : n.children()) {
                add(c, child, hb, layout, pool, configWrites, slots);
            }
            fn.updateLinkActive();
            if (s.type() == PciPortType.ROOT_PORT || s.type() == PciPortType.DOWNSTREAM) {
                trainLink(fn, child);
            }
        }
    }

    /**
     * The link below the downstream-facing {@code port} trains to the highest speed and the widest width both ends
     * support (PCIe Base Spec 4.2.6, Link Training): the lesser of their Max Link Speeds and Maximum Link Widths,
     * which the Link Status of the port and of every function of the device below then shows (7.5.3.8).
     */
    private static void trainLink(PciFunction port, PciBus below) {
        List<ConfigSpace> ends = new ArrayList<>();
        ends.add(port.configSpace());
        for (PciFunction f : below.devices()) {
            if (f.configSpace().findCapability(CAP_ID_EXP).isPresent()) {
                ends.add(f.configSpace());
            }
        }
        if (ends.size() < 2) {
            return;
        }
        int speed = Integer.MAX_VALUE;
        int width = Integer.MAX_VALUE;
        for (ConfigSpace cs : ends) {
            int cap = cs.read(cs.findCapability(CAP_ID_EXP).getAsInt() + EXP_LNKCAP, 4);
            speed = Math.min(speed, cap & EXP_LNKCAP_SLS);
            width = Math.min(width, (cap & EXP_LNKCAP_MLW) >>> 4);
        }
        for (ConfigSpace cs : ends) {
            cs.linkTrained(speed, width);
        }
    }
}
