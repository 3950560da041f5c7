package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.Vfio;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The user-space driver on the default machine's NVMe at 06:00.0, as SPDK's PCIe transport drives a controller
 * ({@code lib/nvme/nvme_pcie.c}, {@code nvme_pcie_qpair.c}, {@code nvme_ctrlr.c}): bring-up through VFIO, random
 * data written and read back bit-exact through pinned buffers at IOVA = VA (two PRPs and PRP lists), polled and
 * with MSI-X, and nothing pinned, mapped or bound after {@link NvmeController#close}.
 */
class NvmeControllerTest {
    static final String NVME = "0000:06:00.0";
    private final Machine machine = Machine.bootDefault();
    private final long pinsBefore = machine.memory().pinsOutstanding();

    @AfterEach
    void close() {
        try {
            assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
            assertEquals(0, Vfio.of(machine).pinnedPages(), "VFIO holds no pin");
            assertTrue(machine.iommu().domains().stream().noneMatch(d -> d.type() == IommuDomainType.UNMANAGED),
                    "no VFIO domain left");
            PciFunction fn = machine.pci().function(NVME);
            assertTrue(fn.driver().isEmpty(), "06:00.0 given back to no driver");
            assertTrue(fn.driverOverride().isEmpty(), "and its override cleared");
        } finally {
            machine.close();
        }
    }

    @Test
    void bringUpIdentifiesTheController() {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT)) {
            NvmeIdentity id = c.identity();
            assertEquals(NVME, id.bdf());
            assertEquals(0x1da0, id.vendor());
            assertEquals(1L << 30, id.namespaceBytes(), "the default machine's 1 GiB namespace");
            assertEquals(512, id.blockSize());
            assertEquals(4096L << 5, id.maxTransfer(), "MDTS 5 of 4 KiB pages");
            assertTrue(id.ioQueues() >= 1);
            assertEquals("vfio-pci", machine.pci().function(NVME).driver().orElseThrow().name());
        }
    }

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    /** Writes then reads random data at random LBAs in 512 B, 4 KiB, 8 KiB (two PRPs) and 64 KiB (a PRP list) sizes. */
    private void writeThenRead(NvmeController c, QueuePair qp) {
        NvmeIdentity id = c.identity();
        Random rnd = new Random(13);
        try (DmaRegion out = DmaRegion.allocate(c.frontEnd(), 1 << 20);
             DmaRegion in = DmaRegion.allocate(c.frontEnd(), 1 << 20)) {
            for (DmaRegion r : new DmaRegion[]{out, in}) {
                assertTrue(Long.compareUnsigned(r.va(), 1L << 32) >= 0 && r.va() % DmaRegion.UNIT == 0,
                        "an ordinary mmap address above 4 GiB, 2 MiB aligned (issue 13): 0x" + Long.toHexString(r.va()));
            }
            for (int size : new int[]{512, 4096, 8192, 65536, 128 * 1024}) {
                for (int i = 0; i < 4; i++) {
                    byte[] data = random(size, rnd.nextLong());
                    long offset = (rnd.nextInt(8) * 4096L) + (size == 512 ? 512L * rnd.nextInt(8) : 0);
                    long slba = (rnd.nextLong() >>> 1) % (id.blocks() - size / id.blockSize());
                    out.write(offset, MemorySegment.ofArray(data));
                    c.io(qp, NvmeCommand.NVM_WRITE, slba, out, offset, size);
                    in.write(offset, MemorySegment.ofArray(new byte[size]));
                    c.io(qp, NvmeCommand.NVM_READ, slba, in, offset, size);
                    MemorySegment back = MemorySegment.ofArray(new byte[size]);
                    in.read(offset, back);
                    assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE), size + " bytes at LBA " + slba);
                }
            }
        }
    }

    @Test
    void randomDataWrittenThenReadBackBitExactPolled() {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT)) {
            QueuePair qp = c.createIoQueuePair(64, c.identity().maxTransfer(), false);
            writeThenRead(c, qp);
            assertEquals(40, qp.completed());
            assertFalse(qp.interrupts());
        }
    }

    @Test
    void randomDataWrittenThenReadBackBitExactWithMsix() throws InterruptedException {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT.withIrqVectors(2))) {
            QueuePair qp = c.createIoQueuePair(64, c.identity().maxTransfer(), true);
            assertTrue(machine.pci().function(NVME).msix().orElseThrow().enabled(), "MSI-X on through VFIO");
            writeThenRead(c, qp);
            assertTrue(qp.awaitInterrupt(5, TimeUnit.SECONDS) > 0, "the queue's vector fired its eventfd");
        }
    }

    /** SPDK's {@code delay_cmd_submit}: entries written first, one SQ doorbell for them, rung by the next poll. */
    @Test
    void delayedSubmissionsAreRungByThePoll() {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT);
             DmaRegion buf = DmaRegion.allocate(c.frontEnd(), 4 * 4096)) {
            QueuePair qp = c.createIoQueuePair(8, 4096, false);
            qp.delaySubmissions(true);
            for (int i = 0; i < 4; i++) {
                qp.submitIo(NvmeCommand.NVM_READ, NvmeController.NSID, 8L * i, 8, buf, 4096L * i, 4096);
            }
            assertEquals(4, qp.outstanding());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (qp.outstanding() > 0 && System.nanoTime() < deadline) {
                qp.poll((cid, status, dw0) -> assertEquals(0, status), 8);
            }
            assertEquals(0, qp.outstanding(), "all four completed after the poll rang the doorbell");
            assertEquals(4, qp.completed());
        }
    }

    @Test
    void queuePairLimitsAreErrnos() {
        try (NvmeController c = NvmeController.attach(machine, NVME, NvmeController.Options.DEFAULT)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> c.createIoQueuePair(1, 4096, false));
            assertEquals(Errno.EINVAL, e.errno());
            e = assertThrows(ErrnoException.class, () -> c.createIoQueuePair(64, 1 << 30, false));
            assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
            e = assertThrows(ErrnoException.class, () -> c.createIoQueuePair(64, 4096, true));
            assertEquals(Errno.EINVAL, e.errno(), "no MSI-X vector enabled: " + e.getMessage());
            QueuePair qp = c.createIoQueuePair(2, 4096, false);
            try (DmaRegion buf = DmaRegion.allocate(c.frontEnd(), 4096)) {
                qp.submitIo(NvmeCommand.NVM_READ, NvmeController.NSID, 0, 8, buf, 0, 4096);
                e = assertThrows(ErrnoException.class,
                        () -> qp.submitIo(NvmeCommand.NVM_READ, NvmeController.NSID, 0, 8, buf, 0, 4096));
                assertEquals(Errno.EAGAIN, e.errno(), "a 2-entry queue holds one command");
                e = assertThrows(ErrnoException.class,
                        () -> qp.submitIo(NvmeCommand.NVM_READ, NvmeController.NSID, 0, 24, buf, 0, 12288));
                assertEquals(Errno.EINVAL, e.errno(), "no PRP list pages: " + e.getMessage());
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (qp.outstanding() > 0 && System.nanoTime() < deadline) {
                    qp.poll((cid, status, dw0) -> assertEquals(0, status), 1);
                }
                assertEquals(0, qp.outstanding());
            }
        }
    }

    @Test
    void aFailedAttachLeavesNothing() {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> NvmeController.attach(machine, "0000:06:00.0", new NvmeController.Options(4096, 0)));
        assertEquals(Errno.ENOMEM, e.errno(), "4 KiB of RLIMIT_MEMLOCK cannot hold the admin queues: " + e.getMessage());
        e = assertThrows(ErrnoException.class,
                () -> NvmeController.attach(machine, "0000:07:00.0", NvmeController.Options.DEFAULT));
        assertEquals(Errno.ENODEV, e.errno());
    }
}
