package dev.dmaplane.p2pdma;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Providers' p2pmem as {@code drivers/pci/p2pdma.c} keeps it: {@code pci_p2pdma_add_resource} validates the BAR
 * range and adds it to a genalloc pool ({@code lib/genalloc.c}, page granules, first fit), {@code pci_alloc_p2pmem}
 * / {@code pci_free_p2pmem} hand pages out and back, {@code pci_p2pmem_publish} lets other drivers find the memory
 * and {@code pci_p2pmem_find_many} picks the published provider closest to the clients.
 */
class P2pMemoryTest {
    private static final long MIB = 1L << 20;
    private final MachineFiles files = new MachineFiles();

    @AfterEach
    void close() {
        files.close();
    }

    private static Errno errno(Executable e) {
        return assertThrows(ErrnoException.class, e).errno();
    }

    @Test
    void addResourceTakesOnlyAPageAlignedRangeOfAMemoryBar() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = m.pci().function("03:00.0");
        long vram = 16L << 30;

        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 0, MIB, 0)), "BAR0 is registers");
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 4, MIB, 0)), "no BAR4");
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 2, MIB, vram)), "offset at the end");
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 2, MIB, -4096)));
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 2, 2 * MIB, vram - MIB)), "runs past the BAR");
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 2, -MIB, 0)));
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 2, MIB, 100)), "not page-aligned");
        assertEquals(Errno.EINVAL, errno(() -> p2p.addResource(gpu, 2, MIB + 1, 0)));
        assertEquals(Optional.empty(), p2p.memory(gpu), "nothing was set up by the refusals");

        P2pMemory mem = p2p.addResource(gpu, 2, MIB, 4 * MIB);
        assertEquals(MIB, mem.size());
        assertEquals(MIB, mem.available());
        assertFalse(mem.published(), "new p2pmem is the provider driver's own until published");
        assertEquals(Errno.EBUSY, errno(() -> p2p.addResource(gpu, 2, MIB, 4 * MIB + 512 * 1024)), "overlaps");
        assertSame(mem, p2p.addResource(gpu, 2, 0, vram - MIB), "size 0: the rest of the BAR, same pool");
        assertEquals(2 * MIB, mem.size());
        assertEquals(List.of(new P2pMemory.Resource(2, 4 * MIB, MIB, gpu.bar(2).orElseThrow().address() + 4 * MIB),
                new P2pMemory.Resource(2, vram - MIB, MIB, gpu.bar(2).orElseThrow().address() + vram - MIB)), mem.resources());
        assertTrue(m.tracer().select(e -> e.kind() == TraceKind.P2PDMA && e.detail().startsWith("added peer-to-peer DMA memory BAR2")).size() == 2);
    }

    @Test
    void allocationsAreFirstFitPagesUntilThePoolRunsDry() {
        Machine m = files.boot();
        PciFunction gpu = m.pci().function("03:00.0");
        long base = gpu.bar(2).orElseThrow().address() + 2 * MIB;
        P2pMemory mem = P2pDma.of(m).addResource(gpu, 2, MIB, 2 * MIB);

        assertEquals(Errno.EINVAL, errno(() -> mem.alloc(0)));
        assertEquals(Errno.EINVAL, errno(() -> mem.alloc(-4096)));
        assertEquals(Errno.ENOMEM, errno(() -> mem.alloc(MIB + 1)), "larger than the pool");

        P2pAllocation small = mem.alloc(100);
        assertEquals(base, small.busAddress());
        assertEquals(100, small.size());
        assertEquals(MIB - 4096, mem.available(), "a whole page is reserved");
        List<P2pAllocation> all = new ArrayList<>(List.of(small));
        for (int i = 0; i < 15; i++) {
            all.add(mem.alloc(64 * 1024));
        }
        assertEquals(base + 4096, all.get(1).busAddress(), "first fit, right after the small one");
        assertEquals(60 * 1024, mem.available());
        ErrnoException full = assertThrows(ErrnoException.class, () -> mem.alloc(64 * 1024));
        assertEquals(Errno.ENOMEM, full.errno());
        assertTrue(full.getMessage().contains("61440 of 1048576 bytes free"), full.getMessage());

        P2pAllocation third = all.get(3);
        mem.free(third);
        assertEquals(third.busAddress(), mem.alloc(64 * 1024).busAddress(), "the freed hole is the first fit again");
        mem.free(small);
        assertEquals(Errno.EINVAL, errno(() -> mem.free(small)), "double free");
        assertEquals(Errno.EINVAL, errno(() -> mem.free(new P2pAllocation(gpu, gpu.bar(2).orElseThrow(), base + 512 * 1024 + 4096, 4096))),
                "never allocated there");
        assertTrue(mem.available() >= 4096);
    }

    @Test
    void theCpuSeesAnAllocationThroughTheBar() {
        Machine m = files.boot();
        PciFunction gpu = m.pci().function("03:00.0");
        Bar vram = gpu.bar(2).orElseThrow();
        P2pMemory mem = P2pDma.of(m).addResource(gpu, 2, 8 * MIB, MIB);

        P2pAllocation a = mem.alloc(MIB + MIB / 2);
        assertEquals(vram.address() + 2 * MIB, a.busAddress(), "1.5 MiB from 1 MiB would straddle a 2 MiB chunk: placed at the next one");
        MemorySegment cpu = a.cpuView();
        for (int i = 0; i < 1000; i++) {
            cpu.set(ValueLayout.JAVA_BYTE, i * 1500L, (byte) (i * 7 + 1));
        }
        byte[] back = new byte[1];
        vram.memory().read(a.barOffset() + 999 * 1500L, MemorySegment.ofArray(back));
        assertEquals((byte) (999 * 7 + 1), back[0]);

        P2pAllocation big = mem.alloc(3 * MIB);
        assertEquals(Errno.EINVAL, errno(big::cpuView), "3 MiB spans chunks of device memory");
        byte[] data = new byte[(int) (3 * MIB)];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i / 4096 + i);
        }
        big.write(0, MemorySegment.ofArray(data));
        byte[] read = new byte[data.length];
        big.read(0, MemorySegment.ofArray(read));
        assertArrayEquals(data, read);
        assertEquals(Errno.EFAULT, errno(() -> big.write(3 * MIB - 8, MemorySegment.ofArray(new byte[16]))));
    }

    @Test
    void findManyPicksThePublishedProviderClosestToAllClients() {
        Machine m = files.nvmeCmb().switchHcaMemory().hostBridgeAllowsP2p().boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction gpu = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        PciFunction hca2 = m.pci().function("05:00.0");
        PciFunction nvme = m.pci().function("06:00.0");
        P2pMemory vram = p2p.addResource(gpu, 2, 4 * MIB, 0);
        P2pMemory hcaMem = p2p.addResource(hca, 2, 0, 0);
        P2pMemory cmb = p2p.addResource(nvme, 2, 0, 0);

        assertEquals(Optional.empty(), p2p.findMany(List.of(hca)), "nothing is published yet");
        vram.publish(true);
        hcaMem.publish(true);
        cmb.publish(true);

        assertSame(hcaMem, p2p.findMany(List.of(hca)).orElseThrow(), "a client's own memory is closest (0)");
        assertSame(cmb, p2p.findMany(List.of(hca2)).orElseThrow(), "CMB at 2+2 through the host bridge beats 4+2");
        assertSame(vram, p2p.findMany(List.of(gpu, hca)).orElseThrow(), "GPU and HCA are both at 0+4: the first in bus order wins");
        vram.publish(false);
        assertSame(hcaMem, p2p.findMany(List.of(gpu, hca)).orElseThrow(), "unpublished memory is not found");
        assertTrue(m.tracer().select(e -> e.kind() == TraceKind.P2PDMA && e.detail().startsWith("find: 0000:04:00.0 is the closest")).size() >= 2);
    }

    /**
     * {@code pdev->p2pdma} hangs off the PCI device, so p2pmem one driver publishes is found by every other driver
     * of the machine ({@code pci_p2pmem_find_many} walks all PCI devices): every way to reach the machine's core,
     * the old {@code create} included, gives the one instance, and a new machine starts with none.
     */
    @Test
    @SuppressWarnings("deprecation")
    void p2pmemOneDriverPublishesIsFoundByEveryUserOfTheMachine() {
        Machine m = files.boot();
        PciFunction gpu = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        P2pDma provider = P2pDma.create(m);
        P2pDma client = P2pDma.create(m);
        P2pMemory vram = provider.addResource(gpu, 2, 4 * MIB, 0);
        vram.publish(true);

        assertSame(vram, client.findMany(List.of(hca)).orElseThrow(), "published p2pmem is the machine's, not one handle's");
        assertSame(vram, client.memory(gpu).orElseThrow());
        assertEquals(Errno.EBUSY, errno(() -> client.addResource(gpu, 2, MIB, 0)), "the range is taken machine-wide");
        assertSame(provider, P2pDma.of(m));
        Machine other = files.boot();
        assertNotSame(provider, P2pDma.of(other), "one core per machine");
        assertEquals(Optional.empty(), P2pDma.of(other).memory(other.pci().function("03:00.0")));
    }

    @Test
    void findManyFindsNothingAcrossAHostBridgeThatForbidsIt() {
        Machine m = files.nvmeCmb().boot();
        P2pDma p2p = P2pDma.of(m);
        p2p.addResource(m.pci().function("06:00.0"), 2, 0, 0).publish(true);
        p2p.addResource(m.pci().function("03:00.0"), 2, MIB, 0).publish(true);
        assertEquals(Optional.empty(), p2p.findMany(List.of(m.pci().function("05:00.0"))));
        assertEquals(m.pci().function("03:00.0"), p2p.findMany(List.of(m.pci().function("04:00.0"))).orElseThrow().provider());
    }

    /**
     * The devres teardown of {@code pci_p2pdma_add_resource} at the provider driver's unbind: the page map's
     * reference is killed first ({@code memunmap_pages}; {@code pci_alloc_p2pmem} then fails, its callers say
     * ENOMEM) and the pool goes ({@code pci_p2pdma_release}) once the allocations out were freed, which the kernel
     * waits for; unpublished at once, so {@code pci_p2pmem_find_many} no longer finds it.
     */
    @Test
    void releasedP2pmemIsUnpublishedAndGoesWithTheLastFree() {
        Machine m = files.nvmeCmb().hostBridgeAllowsP2p().boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction nvme = m.pci().function("06:00.0");
        PciFunction hca = m.pci().function("05:00.0");
        assertEquals(Errno.EINVAL, errno(() -> p2p.releaseResources(nvme)), "no p2pmem to take back");
        P2pMemory cmb = p2p.addResource(nvme, 2, 0, 0);
        cmb.publish(true);
        P2pAllocation out = cmb.alloc(8192);
        P2pMapping mapped = p2p.mapSg(hca, out, DmaDirection.BIDIRECTIONAL);

        p2p.releaseResources(nvme);
        assertFalse(cmb.published());
        assertEquals(Optional.empty(), p2p.findMany(List.of(hca, nvme)), "unpublished at once");
        assertEquals(Errno.ENOMEM, errno(() -> cmb.alloc(4096)), "pci_alloc_p2pmem fails once the ref is killed");
        cmb.publish(true);
        assertFalse(cmb.published(), "memory being taken back is not published again");
        assertEquals(Errno.EINVAL, errno(() -> p2p.releaseResources(nvme)), "already being taken back");
        assertSame(cmb, p2p.memory(nvme).orElseThrow(), "the pool stays while an allocation is out");

        assertEquals(Errno.EBUSY, errno(() -> cmb.free(out)), "still mapped for the HCA");
        p2p.unmapSg(mapped);
        cmb.free(out);
        assertEquals(Optional.empty(), p2p.memory(nvme), "the last free finished the teardown");
        assertTrue(m.tracer().select(e -> e.kind() == TraceKind.P2PDMA
                && e.detail().startsWith("pci_p2pdma_release")).size() == 1);

        P2pMemory again = p2p.addResource(nvme, 2, 0, 0);
        assertNotSame(cmb, again, "a new driver adds the BAR anew");
        p2p.releaseResources(nvme);
        assertEquals(Optional.empty(), p2p.memory(nvme), "with nothing out the pool goes at once");
    }

    @Test
    void aProviderThatLeftItsBusHandsOutNothing() {
        Machine m = files.boot();
        PciFunction gpu = m.pci().function("03:00.0");
        P2pMemory mem = P2pDma.of(m).addResource(gpu, 2, MIB, 0);
        m.hotUnplug(gpu);
        assertEquals(Errno.ENODEV, errno(() -> mem.alloc(4096)));
    }
}
