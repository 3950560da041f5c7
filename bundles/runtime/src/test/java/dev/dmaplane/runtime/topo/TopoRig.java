package dev.dmaplane.runtime.topo;

import dev.dmaplane.accel.AccelContext;
import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.driver.gpu.host.GpuHost;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;

import java.util.ArrayList;
import java.util.List;

/**
 * The default machine as a user sees it after {@code ./dmaplane demo} set it up: the GPU driver bound to 0000:03:00.0
 * ({@link GpuHost}), an HCA driver bound to both HCAs (bus masters, as {@code rxe}'s probe makes them), a VRAM
 * object exported with PRIME and attached by both HCAs as dynamic importers, and a system-heap buffer attached by the
 * second HCA as a static one.
 */
public final class TopoRig implements AutoCloseable {
    public static final String GPU = "0000:03:00.0";
    public static final String HCA = "0000:04:00.0";
    public static final String HCA2 = "0000:05:00.0";
    public static final String HCA_DRIVER = "topo-hca";

    public final Machine machine;
    final GpuHost gpu;
    final Driver hcaDriver = new HcaDriver();
    final AccelContext ctx;
    final DmaBuf vram;
    final DmaBuf heap;
    private final List<Attachment> attachments = new ArrayList<>();

    TopoRig(Machine machine) {
        this.machine = machine;
        this.gpu = GpuHost.on(machine);
        machine.devices().registerDriver(hcaDriver);
        this.ctx = gpu.devices().getFirst().open();
        this.vram = ctx.primeExport(ctx.createBo(64 * 1024));
        this.heap = new SystemHeap(DmaBufs.of(machine)).allocate(8192);
        // dynamic importers that allow peer-to-peer, as rxe's regDmabufMr attaches; the exporter clears it for HCA2
        attachments.add(vram.attach(fn(HCA), new Importer(true, a -> { })));
        attachments.add(vram.attach(fn(HCA2), new Importer(true, a -> { })));
        attachments.add(heap.attach(fn(HCA2), null));
    }

    /** The rig on the embedded default machine. */
    public static TopoRig onDefaultMachine() {
        return new TopoRig(Machine.bootDefault());
    }

    PciFunction fn(String bdf) {
        return machine.pci().function(bdf);
    }

    @Override
    public void close() {
        for (Attachment a : attachments) {
            a.dmabuf().detach(a);
        }
        heap.put();
        vram.put();
        ctx.close();
        gpu.close();
        machine.devices().unregisterDriver(hcaDriver);
        machine.close();
    }

    /** Binds the Ethernet-class HCAs and makes them bus masters, as a NIC driver's probe does. */
    private static final class HcaDriver implements Driver {
        @Override
        public String name() {
            return HCA_DRIVER;
        }

        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.ofClass(0x020000, 0xFFFF00));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            PciFunction fn = (PciFunction) device;
            fn.setMaster(true);
            return () -> fn.setMaster(false);
        }
    }
}
