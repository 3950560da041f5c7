package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.AccelDeviceHandle;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.p2pdma.P2pDma;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.List;

import static dev.dmaplane.accel.AccelRig.MIB;
import static dev.dmaplane.accel.BufferObjectTest.errno;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Unregistering a device with everything live ({@code drm_dev_unplug}, and the uverbs-style disassociation of
 * every open file): nothing allocated, pinned or mapped is left, and calls on old contexts fail with {@code EIO}.
 */
class UnregisterTest {
    private final AccelRig rig = new AccelRig();

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    @Test
    void unregisterWithEverythingLiveLeavesNothing() {
        long frames = rig.machine.memory().allocatedFrames();
        long pins = rig.machine.memory().pinsOutstanding();
        int mappings = rig.machine.activeDmaMappings();
        AccelContext a = rig.device.open();
        AccelContext b = rig.device.open();
        int va = a.createBo(4 * MIB, Placement.VRAM, EnumSet.of(Placement.VRAM));
        a.pin(va);
        int vis = a.createBo(MIB);
        a.write(vis, 0, MemorySegment.ofArray(new byte[4096]));
        a.vmBind(vis, 0, 1L << 32, MIB, true);
        a.closeBo(vis);
        int host = b.createBo(3 * MIB);
        b.write(host, 0, MemorySegment.ofArray(new byte[]{1, 2, 3}));
        assertEquals(Placement.HOST, b.info(host).placement(), "VRAM is full");
        b.vmBind(host, 0, 0, 3 * MIB, false);
        assertTrue(rig.machine.memory().allocatedFrames() > frames);
        assertTrue(rig.machine.activeDmaMappings() > mappings);

        rig.handle.unregister();

        assertEquals(frames, rig.machine.memory().allocatedFrames(), "host frames");
        assertEquals(pins, rig.machine.memory().pinsOutstanding(), "pins");
        assertEquals(mappings, rig.machine.activeDmaMappings(), "DMA mappings");
        assertEquals(List.of(), rig.machine.dmaDebug().reports(), "dma-debug");
        assertEquals(2 * MIB, P2pDma.of(rig.machine).memory(rig.fn).orElseThrow().available(), "the visible window");
        assertEquals(AccelRig.VRAM, rig.device.vramAvailable(), "all VRAM");
        assertTrue(rig.gpu.pageTables.isEmpty(), "every VM destroyed");
        assertEquals(Errno.EIO, errno(() -> a.createBo(4096)));
        assertEquals(Errno.EIO, errno(() -> b.info(host)));
        assertEquals(Errno.ENODEV, errno(() -> rig.device.open()));
        assertEquals(Errno.ENODEV, errno(() -> rig.core.open(rig.handle.name())));
        assertEquals(List.of(), rig.core.devices());
        a.close();
        b.close();
        rig.handle.unregister();
    }

    @Test
    void theSameProviderRegistersAgainOnTheSameVram() {
        try (AccelContext a = rig.device.open()) {
            a.createBo(2 * MIB, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
        }
        rig.handle.unregister();
        AccelDeviceHandle again = rig.core.register(rig.provider);
        try (AccelContext a = rig.core.open(again.name())) {
            assertEquals(rig.handle.name(), again.name(), "the lowest free number");
            int h = a.createBo(2 * MIB, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
            assertEquals(Placement.VISIBLE_VRAM, a.info(h).placement(), "the window's p2pmem is reused, all free");
        } finally {
            again.unregister();
        }
        assertEquals(2 * MIB, P2pDma.of(rig.machine).memory(rig.fn).orElseThrow().available());
    }
}
