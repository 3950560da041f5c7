package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.device.AuxDevice;
import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.dmaengine.DmaResult;
import dev.dmaplane.dmaengine.DmaStatus;
import dev.dmaplane.dmaengine.DmaTransactionType;
import dev.dmaplane.dmaengine.DmaTxDescriptor;
import dev.dmaplane.dmaengine.DmaTxResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuFault;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The GPU's dmaengine channel as a client sees it ({@code Documentation/driver-api/dmaengine/client.rst}, the
 * pattern of {@code drivers/dma/dmatest.c}): found by binding a driver to the auxiliary device {@code gpu.dma}
 * ({@code auxiliary_bus.rst}), prepare, set the callback, submit, issue pending, results by
 * {@code dmaengine_tx_status} and {@code callback_result}; a source the IOMMU refuses ends {@code READ_FAILED}
 * with the IOMMU fault recorded ({@code iommu_report_device_fault}).
 */
class GpuDmaChannelTest {
    private final DriverRig rig = new DriverRig();
    private final List<DmaChannel> clients = new CopyOnWriteArrayList<>();
    private final Driver client = new Driver() {
        @Override
        public String name() {
            return "dmatest-client";
        }

        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Auxiliary.of(GpuDriver.AUX_DMA));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            DmaChannel ch = ((AuxDevice) device).platformData(DmaChannel.class);
            clients.add(ch);
            return () -> clients.remove(ch);
        }
    };

    @AfterEach
    void close() {
        rig.close();
    }

    private DmaChannel channel() {
        rig.machine.devices().registerDriver(client);
        assertEquals(1, clients.size(), "the client bound to gpu.dma.0");
        return clients.getFirst();
    }

    private static CompletableFuture<DmaTxResult> callback(DmaTxDescriptor d) {
        CompletableFuture<DmaTxResult> done = new CompletableFuture<>();
        d.setCallback(done::complete);
        return done;
    }

    private static DmaTxResult get(CompletableFuture<DmaTxResult> f) throws Exception {
        return f.get(DriverRig.WAIT.toSeconds(), TimeUnit.SECONDS);
    }

    @Test
    void memcpyAndMemsetCompleteWithCallbacks() throws Exception {
        DmaChannel ch = channel();
        assertEquals(EnumSet.of(DmaTransactionType.MEMCPY, DmaTransactionType.MEMSET), ch.capabilities());
        byte[] data = DriverRig.random(200_000, 21);
        DriverRig.HostBuffer src = rig.host(data.length);
        DriverRig.HostBuffer dst = rig.host(data.length);
        src.put(data);
        DmaTxDescriptor copy = ch.prepMemcpy(dst.bus(), src.bus(), data.length, DmaChannel.PREP_INTERRUPT);
        CompletableFuture<DmaTxResult> copied = callback(copy);
        long c1 = copy.submit();
        DmaTxDescriptor set = ch.prepMemset(dst.bus() + 100, 0x5A, 1000, DmaChannel.PREP_INTERRUPT);
        CompletableFuture<DmaTxResult> cleared = callback(set);
        long c2 = set.submit();
        assertTrue(c2 > c1);
        assertEquals(DmaStatus.IN_PROGRESS, ch.txStatus(c1), "submitted, not issued");
        ch.issuePending();
        assertEquals(new DmaTxResult(DmaResult.NOERROR, 0), get(copied));
        assertEquals(new DmaTxResult(DmaResult.NOERROR, 0), get(cleared));
        ch.synchronize();
        assertEquals(DmaStatus.COMPLETE, ch.txStatus(c1));
        assertEquals(DmaStatus.COMPLETE, ch.txStatus(c2));
        byte[] expected = data.clone();
        Arrays.fill(expected, 100, 1100, (byte) 0x5A);
        assertArrayEquals(expected, dst.bytes());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ch.txStatus(c2 + 1)).errno());
        ErrnoException zero = assertThrows(ErrnoException.class, () -> ch.prepMemcpy(dst.bus(), src.bus(), 0, 0));
        assertEquals(Errno.EINVAL, zero.errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, copy::submit).errno(), "submitted twice");
    }

    /** {@code virt-dma.c} {@code vchan_complete}: the cookie is complete before the descriptor's callback runs. */
    @Test
    void theCookieIsCompleteWhenTheCallbackRuns() throws Exception {
        DmaChannel ch = channel();
        DriverRig.HostBuffer dst = rig.host(4096);
        AtomicLong cookie = new AtomicLong();
        CompletableFuture<DmaStatus> seen = new CompletableFuture<>();
        DmaTxDescriptor d = ch.prepMemset(dst.bus(), 7, 4096, DmaChannel.PREP_INTERRUPT);
        d.setCallback(r -> seen.complete(ch.txStatus(cookie.get())));
        cookie.set(d.submit());
        ch.issuePending();
        assertEquals(DmaStatus.COMPLETE, seen.get(DriverRig.WAIT.toSeconds(), TimeUnit.SECONDS));
    }

    @Test
    void anUnmappedSourceIsReadFailedWithTheIommuFaultRecorded() throws Exception {
        DmaChannel ch = channel();
        DriverRig.HostBuffer dst = rig.host(8192);
        long unmapped = 0x7_0000_0000L;
        DmaTxDescriptor bad = ch.prepMemcpy(dst.bus(), unmapped, 4096, DmaChannel.PREP_INTERRUPT);
        CompletableFuture<DmaTxResult> failed = callback(bad);
        long cookie = bad.submit();
        DmaTxDescriptor next = ch.prepMemset(dst.bus(), 0x33, 64, DmaChannel.PREP_INTERRUPT);
        CompletableFuture<DmaTxResult> ok = callback(next);
        long c2 = next.submit();
        ch.issuePending();
        assertEquals(new DmaTxResult(DmaResult.READ_FAILED, 4096), get(failed));
        assertEquals(DmaResult.NOERROR, get(ok).result(), "the channel goes on after the fault");
        assertEquals(DmaStatus.ERROR, ch.txStatus(cookie));
        assertEquals(DmaStatus.COMPLETE, ch.txStatus(c2));
        List<IommuFault> faults = rig.machine.iommu().faults();
        assertTrue(faults.stream().anyMatch(f -> f.device().equals(DriverRig.GPU) && f.iova() == unmapped
                && !f.write()), faults.toString());
    }

    @Test
    void terminateAllAbortsWhatIsNotIssued() throws Exception {
        DmaChannel ch = channel();
        DriverRig.HostBuffer dst = rig.host(4096);
        DmaTxDescriptor d = ch.prepMemset(dst.bus(), 1, 4096, DmaChannel.PREP_INTERRUPT);
        CompletableFuture<DmaTxResult> r = callback(d);
        long cookie = d.submit();
        ch.terminateAll();
        assertEquals(DmaResult.ABORTED, get(r).result());
        ch.synchronize();
        assertEquals(DmaStatus.ERROR, ch.txStatus(cookie));
        DmaTxDescriptor after = ch.prepMemset(dst.bus(), 2, 4096, DmaChannel.PREP_INTERRUPT);
        CompletableFuture<DmaTxResult> r2 = callback(after);
        after.submit();
        ch.issuePending();
        assertEquals(DmaResult.NOERROR, get(r2).result(), "the channel serves new transactions");
    }

    /** {@code dmaengine_synchronize} waits for what runs, not for a descriptor submitted and never issued. */
    @Test
    void synchronizeDoesNotWaitForTransactionsNotIssued() {
        DmaChannel ch = channel();
        DriverRig.HostBuffer dst = rig.host(4096);
        long cookie = ch.prepMemset(dst.bus(), 1, 4096, 0).submit();
        ch.synchronize();
        assertEquals(DmaStatus.IN_PROGRESS, ch.txStatus(cookie), "submitted, not issued");
    }

    @Test
    void unbindingTheGpuUnbindsTheClientAndRefusesNewWork() {
        DmaChannel ch = channel();
        rig.machine.devices().unregisterDriver(rig.driver);
        assertEquals(List.of(), clients, "the auxiliary device went, the client with it");
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class,
                () -> ch.prepMemset(0, 0, 64, 0)).errno());
    }
}
