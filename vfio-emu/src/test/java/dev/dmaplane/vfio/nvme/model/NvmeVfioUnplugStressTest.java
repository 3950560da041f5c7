package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_READ;
import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The NVMe unplugged 100 times under a user-space driver over VFIO with I/O outstanding on several queues, and
 * plugged back each time (SPDK's issue #3205 is the hang this guards against): {@code vfio_unregister_group_dev}
 * signals the REQ eventfd first ({@code vfio_pci_core_request} in drivers/vfio/pci/vfio_pci_core.c) and waits a
 * bounded time, the driver answers by closing its files ({@code nvme_pcie_ctrlr_destruct}, lib/nvme/nvme_pcie.c),
 * and every call, the unplug included, returns within a second. After each round nothing is left: no page pinned
 * or charged to the process, no DMA mapping of the function, no IOMMU domain but the default ones, the group back
 * on its DMA domain, no descriptor or mapping in the process, and exactly one controller thread (the new one).
 * <p>
 * Deterministic: each I/O queue pair has an SQ of 16 entries on a CQ of 2, so the controller completes one of the
 * 8 commands submitted to each queue and holds the other 7 (a full CQ stops its SQ, NVMe Base 2.0 3.3.1.2.1); the
 * unplug starts once it is idle in that state.
 */
class NvmeVfioUnplugStressTest {
    private static final String NVME = "0000:06:00.0";
    private static final int ROUNDS = 100;
    private static final int QUEUES = 4;
    private static final int PER_QUEUE = 8;
    private static final long ONE_SECOND = TimeUnit.SECONDS.toNanos(1);

    private final Machine machine = Machine.boot(TopologyLoader.load(TopologyLoader.defaultMachineText(),
            TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
    private final AtomicReference<Controller> controller = new AtomicReference<>();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("spdk");
    private final VfioUser user = vfio.open(mm, 64 << 20);

    @AfterEach
    void close() {
        user.close();
        mm.close();
        machine.close();
    }

    /** The NVMe model, keeping the controller each realize makes. */
    private DeviceModel model() {
        return new DeviceModel() {
            @Override
            public String name() {
                return NvmeModel.NAME;
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                ModelDevice d = new NvmeModel().realize(ctx);
                controller.set((Controller) d);
                return d;
            }
        };
    }

    private static long controllerThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.isAlive() && t.getName().startsWith(NVME + " nvme")).count();
    }

    @Test
    void hundredUnplugsUnderIoLeaveNothingBehindAndNeverBlock() throws InterruptedException {
        DeviceModel model = model();
        machine.addModel(model);
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        PciFunction fn = machine.pci().function(NVME);
        core.setDriverOverride(fn, "vfio-pci");
        core.reprobe(fn);
        IommuGroup group = machine.iommu().groupOf(fn).orElseThrow();
        long pins = machine.memory().pinsOutstanding();
        int domains = machine.iommu().domains().size();
        int vmas = mm.vmas().size();
        vfio.setRequestTimeout(Duration.ofMillis(500));
        AtomicLong longest = new AtomicLong();
        List<Integer> firstFds = null;

        for (int round = 0; round < ROUNDS; round++) {
            String r = "round " + round + ": ";
            Controller c = controller.get();
            VfioNvmeUser u = new VfioNvmeUser(user, group.id(), NVME, longest);
            List<Integer> fds = List.of(u.container.fd(), u.group.fd(), u.device.fd(), u.req);
            if (firstFds == null) {
                firstFds = fds;
            }
            assertEquals(firstFds, fds, r + "the same descriptors again: none was leaked");
            for (int q = 1; q <= QUEUES; q++) {
                u.createQueuePair(q, 16, 2);
            }
            for (int q = 1; q <= QUEUES; q++) {
                NvmeCommand[] cmds = new NvmeCommand[PER_QUEUE];
                for (int i = 0; i < PER_QUEUE; i++) {
                    int n = (q - 1) * PER_QUEUE + i;
                    cmds[i] = NvmeCommand.readWrite(i % 2 == 0 ? NVM_WRITE : NVM_READ, 0, 1, n, 1, u.iova(u.data(n % 32)), 0);
                }
                u.submit(q, cmds);
            }
            for (int q = 1; q <= QUEUES; q++) {
                assertTrue(u.awaitCompletion(u.cq(q), true).ok(), r + "the first command of queue " + q);
            }
            assertTrue(c.awaitIdle(1, TimeUnit.SECONDS), r + "the controller holds the other commands");

            AtomicLong unplugNanos = new AtomicLong(-1);
            Thread hotplug = Thread.ofPlatform().name("hotplug-" + round).start(() -> {
                long t0 = System.nanoTime();
                machine.hotUnplug(fn);
                unplugNanos.set(System.nanoTime() - t0);
            });
            assertEquals(1, u.awaitRequest(Duration.ofSeconds(1)), r + "REQ signalled to the driver");
            u.close();
            hotplug.join(Duration.ofSeconds(5));
            assertFalse(hotplug.isAlive(), r + "the unplug returned");
            assertTrue(unplugNanos.get() >= 0 && unplugNanos.get() < ONE_SECOND,
                    r + "the unplug took " + unplugNanos.get() / 1_000_000 + " ms");
            longest.accumulateAndGet(unplugNanos.get(), Math::max);

            long t0 = System.nanoTime();
            assertTrue(machine.removeModel(model), r + "the model leaves");
            model = model();
            machine.addModel(model);
            longest.accumulateAndGet(System.nanoTime() - t0, Math::max);
            assertFalse(c.threads().stream().anyMatch(Thread::isAlive), r + "the old controller's engines stopped");
            assertNotSame(c, controller.get(), r + "a new controller");
            assertTrue(fn.isPresent(), r + "plugged back");
            assertEquals("vfio-pci", fn.driver().map(d -> d.name()).orElse("none"), r + "vfio-pci bound it again");

            assertEquals(0, vfio.pinnedPages(), r + "nothing pinned by VFIO");
            assertEquals(0, user.lockedBytes(), r + "nothing charged to locked_vm");
            assertEquals(pins, machine.memory().pinsOutstanding(), r + "no page pinned");
            assertEquals(0, machine.activeDmaMappings(fn), r + "no DMA mapping of the function");
            assertEquals(domains, machine.iommu().domains().size(), r + "no domain left");
            assertEquals(IommuDomainType.DMA, group.domain().type(), r + "the group is back on its DMA domain");
            assertEquals(vmas, mm.vmas().size(), r + "no mapping left in the process");
            for (int fd : fds) {
                assertFalse(user.isOpen(fd), r + "fd " + fd + " closed");
            }
            assertEquals(controller.get().threads().size(), controllerThreads(), r + "only the new controller's engines");
            assertTrue(longest.get() < ONE_SECOND, r + "a call took " + longest.get() / 1_000_000 + " ms");
        }
    }
}
