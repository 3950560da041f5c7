package dev.dmaplane.rdma;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.ReregFlags;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.resource.DeviceResources;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;
import dev.dmaplane.testing.Eventually;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * dma-buf memory regions as {@code ibv_reg_mr(3)} describes {@code ibv_reg_dmabuf_mr}, with the checks of the
 * kernel's {@code UVERBS_METHOD_REG_DMABUF_MR} ({@code uverbs_std_types_mr.c}: same page offset of offset and IOVA,
 * the access flag set, {@code ib_check_mr_access}) and {@code ib_umem_dmabuf_get} ({@code umem_dmabuf.c}: overflow,
 * the buffer's size, a real fd), and the dynamic importer's life: map at registration, {@code move_notify} unmaps,
 * the next access maps again ({@code ib_umem_dmabuf_map_pages}), deregistration detaches. The loopback HCA on
 * 04:00.0 sits under the GPU's switch, so VRAM reaches it by bus address.
 */
@Timeout(60)
class DmabufMrTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final int SIZE = 64 * 1024;

    private final Fixture f;
    private final VerbsContext ctx;
    private final ProtectionDomain pd;
    private final CompletionQueue cq;
    private final long host;
    private final MemoryRegion hostMr;
    private final long hostPins;
    private final PciFunction hca;
    private final DmaBufs bufs;

    DmabufMrTest() {
        f = new Fixture();
        ctx = f.open();
        pd = ctx.allocPd();
        cq = ctx.createCq(64, null, 0);
        host = f.alloc(4 * SIZE);
        hostMr = pd.regMr(host, 4 * SIZE, Fixture.ALL_REMOTE);
        hostPins = f.machine.memory().pinsOutstanding();
        hca = f.machine.pci().function("04:00.0");
        bufs = DmaBufs.of(f.machine);
    }

    @AfterEach
    void close() {
        f.close();
    }

    private static byte[] pattern(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    private static ErrnoException refused(Runnable r) {
        return assertThrows(ErrnoException.class, r::run);
    }

    private static byte[] cpuRead(DmaBuf buf, long off, int n) {
        byte[] out = new byte[n];
        buf.resv().lock();
        try {
            buf.cpuRead(off, MemorySegment.ofArray(out));
        } finally {
            buf.resv().unlock();
        }
        return out;
    }

    private static void cpuWrite(DmaBuf buf, long off, byte[] data) {
        buf.resv().lock();
        try {
            buf.cpuWrite(off, MemorySegment.ofArray(data));
        } finally {
            buf.resv().unlock();
        }
    }

    private static void migrate(VramExporter ex, DmaBuf buf, Target to) {
        Fence fence;
        buf.resv().lock();
        try {
            fence = ex.migrate(buf, to, "test");
        } finally {
            buf.resv().unlock();
        }
        assertTrue(fence.await(Duration.ofSeconds(10)), "the move finished");
        assertTrue(fence.error().isEmpty(), "the move's copy was verified");
    }

    /** RDMA WRITE of {@code len} host bytes at {@code hostOff} to {@code raddr}. */
    private WcStatus write(long hostOff, int len, long raddr, int rkey) {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(new Sge(host + hostOff, len, hostMr.lkey())), SIGNALED, raddr, rkey));
        return cq.poll(1).getFirst().status();
    }

    /** RDMA READ of {@code len} bytes at {@code raddr} into the host buffer at {@code hostOff}. */
    private WcStatus read(long hostOff, int len, long raddr, int rkey) {
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[0].postSend(new SendWr.RdmaRead(2, List.of(new Sge(host + hostOff, len, hostMr.lkey())), SIGNALED, raddr, rkey));
        return cq.poll(1).getFirst().status();
    }

    private Map<String, String> res(MemoryRegion mr) {
        return ctx.resources().stream().filter(r -> r.type().equals("mr") && r.handle() == mr.handle())
                .map(ResourceEntry::attrs).findFirst().orElseThrow();
    }

    private UContext process() {
        return new DeviceResources("dmabuf-fds", f.machine.tracer(), ResourceLimits.UNLIMITED).open();
    }

    private void assertNothingLeft(DmaBuf buf, int mappingsBefore) {
        assertTrue(buf.attachments().isEmpty(), "nothing attached (so no attachment pin either): " + buf.attachments());
        assertEquals(hostPins, f.machine.memory().pinsOutstanding(), "no page pinned beyond the host region's");
        assertEquals(mappingsBefore, f.machine.activeDmaMappings(hca), "nothing mapped");
        // a move's worker drops its reference just after signalling the move's fence (as a kernel job is freed
        // after its fence signals): wait for that, bounded
        Eventually.eventually(() -> buf.refCount() <= 1, Duration.ofSeconds(10), "the move's worker drops its reference");
        assertEquals(1, buf.refCount(), "only the test's reference");
        assertTrue(f.machine.dmaDebug().reports().isEmpty(), f.machine.dmaDebug().reports().toString());
    }

    @Test
    void aSystemHeapBufferTakesRdmaWritesAndReadsAtItsIova() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        int maps = f.machine.activeDmaMappings(hca);
        long iova = 0x7f00_0000_3000L;
        MemoryRegion mr = pd.regDmabufMr(3 * PAGE, 8 * PAGE, iova, buf, Fixture.ALL_REMOTE);
        assertEquals(buf, mr.dmabuf().orElseThrow());
        assertTrue(hostMr.dmabuf().isEmpty());
        assertEquals(3 * PAGE, mr.addr(), "ibv_mr.addr is the offset");
        assertEquals(iova, mr.iova());
        assertEquals(8 * PAGE, mr.length());
        assertFalse(mr.isOnDemand());
        assertEquals(PAGE, mr.pageSize());
        assertEquals(maps + 1, f.machine.activeDmaMappings(hca), "mapped once at registration");
        assertEquals(2, buf.refCount(), "the region holds a reference");
        assertTrue(buf.attachments().getFirst().isDynamic());

        byte[] data = pattern(10_000, 1);
        f.write(host, data);
        assertEquals(WcStatus.SUCCESS, write(0, data.length, iova + 100, mr.rkey()));
        assertArrayEquals(data, cpuRead(buf, 3 * PAGE + 100, data.length), "the bytes are in the buffer at offset + 100");

        byte[] other = pattern(4096, 2);
        cpuWrite(buf, 10 * PAGE, other);
        assertEquals(WcStatus.SUCCESS, read(SIZE, 4096, iova + 7 * PAGE, mr.rkey()));
        assertArrayEquals(other, f.read(host + SIZE, 4096), "RDMA READ from the dma-buf region");
        assertEquals(WcStatus.REM_ACCESS_ERR, write(0, 8, iova + 8 * PAGE, mr.rkey()), "past the region's end");

        Map<String, String> r = res(mr);
        assertEquals(Long.toString(buf.ino()), r.get("dmabuf"));
        assertEquals("0x3000", r.get("dmabuf-offset"));
        assertEquals("dynamic", r.get("importer"));
        assertEquals("1", r.get("dmabuf-mapped"));
        assertFalse(r.containsKey("pinned"));
        assertTrue(f.core.resShow().contains("dmabuf " + buf.ino()), f.core.resShow());
        assertTrue(bufs.bufinfo().contains(hca.name() + " (dynamic, p2p, pins 0, mappings 1)"), bufs.bufinfo());

        mr.destroy();
        assertNothingLeft(buf, maps);
        buf.put();
        assertTrue(buf.isReleased());
    }

    /**
     * {@code ibv_reg_dmabuf_mr(pd, offset, length, iova, fd, access)} with a number from the process's open files
     * (ibv_reg_mr(3); the kernel's {@code ib_umem_dmabuf_get} resolves it with {@code dma_buf_get}): a number not
     * open is EBADF, an open file that is not a dma-buf EINVAL, and the process's exit closes what it left open.
     */
    @Test
    void aProcessRegistersByFdNumberFromItsOpenFiles() {
        AddressSpace mm = ctx.addressSpace();
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        int fd = buf.fd(mm.files()).handle();
        buf.put();
        int rw = Access.LOCAL_WRITE | Access.REMOTE_WRITE;
        assertEquals(Errno.EBADF, errno(() -> pd.regDmabufMr(0, SIZE, 0, fd + 1000, rw)));
        int notADmaBuf = mm.files().register(new UObject("memfd") {
            @Override
            protected void release(RemoveReason reason) {
            }
        }).handle();
        assertEquals(Errno.EINVAL, errno(() -> pd.regDmabufMr(0, SIZE, 0, notADmaBuf, rw)));
        MemoryRegion mr = pd.regDmabufMr(0, SIZE, 0x10000, fd, Fixture.ALL_REMOTE);
        byte[] data = pattern(SIZE, 5);
        f.write(host, data);
        assertEquals(WcStatus.SUCCESS, write(0, SIZE, 0x10000, mr.rkey()));
        assertArrayEquals(data, cpuRead(buf, 0, SIZE));
        mr.destroy();
        assertFalse(buf.isReleased(), "the fd still holds it");

        AddressSpace other = f.machine.newAddressSpace("exiting");
        buf.get();
        buf.fd(other.files());
        buf.put();
        other.close();
        assertFalse(buf.isReleased(), "the first process's fd still holds it");
        DmaBufs.close(mm.files(), fd);
        assertTrue(buf.isReleased(), "the last fd closed");
    }

    @Test
    void theHandleMayBeClosedAfterRegistrationAndTheLastReferenceGoesAtDereg() {
        UContext proc = process();
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        DmaBufHandle fd = buf.fd(proc);
        buf.put();
        MemoryRegion mr = pd.regDmabufMr(0, SIZE, 0x10000, fd, Fixture.ALL_REMOTE);
        DmaBufs.close(proc, fd.handle());
        assertFalse(buf.isReleased(), "the region keeps the buffer");
        byte[] data = pattern(SIZE, 3);
        f.write(host, data);
        assertEquals(WcStatus.SUCCESS, write(0, SIZE, 0x10000, mr.rkey()));
        assertArrayEquals(data, cpuRead(buf, 0, SIZE));
        mr.destroy();
        assertTrue(buf.isReleased(), "deregistration dropped the last reference");
        proc.close();
    }

    @Test
    void badInputIsRefusedWithTheErrnoNamingTheValueAndLeavesNothingBehind() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        int maps = f.machine.activeDmaMappings(hca);
        int rw = Access.LOCAL_WRITE | Access.REMOTE_WRITE;

        ErrnoException e = refused(() -> pd.regDmabufMr(PAGE, SIZE, PAGE, buf, rw));
        assertEquals(Errno.EINVAL, e.errno(), "offset + length beyond the buffer (ib_umem_dmabuf_get)");
        assertTrue(e.getMessage().contains("0x11000") && e.getMessage().contains(Integer.toString(SIZE)), e.getMessage());
        e = refused(() -> pd.regDmabufMr(PAGE, 4 * PAGE, 0x20010, buf, rw));
        assertEquals(Errno.EINVAL, e.errno(), "offset and IOVA page offsets differ (UVERBS_METHOD_REG_DMABUF_MR)");
        assertTrue(e.getMessage().contains("0x20010") && e.getMessage().contains("page offset"), e.getMessage());
        e = refused(() -> pd.regDmabufMr(0, PAGE, 0, buf, rw | Access.ON_DEMAND));
        assertEquals(Errno.EINVAL, e.errno(), "ON_DEMAND is not in the dma-buf flag set");
        assertTrue(e.getMessage().contains("not ON_DEMAND"), e.getMessage());
        e = refused(() -> pd.regDmabufMr(0, PAGE, 0, buf, Access.LOCAL_WRITE | Access.MW_BIND));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("not MW_BIND"), e.getMessage());
        e = refused(() -> pd.regDmabufMr(0, PAGE, 0, buf, Access.REMOTE_WRITE));
        assertEquals(Errno.EINVAL, e.errno(), "ib_check_mr_access: remote write needs local write");
        assertTrue(e.getMessage().contains("REMOTE_WRITE"), e.getMessage());
        e = refused(() -> pd.regDmabufMr(0, 0, 0, buf, rw));
        assertEquals(Errno.EINVAL, e.errno(), "no pages");
        assertTrue(e.getMessage().contains("length 0"), e.getMessage());
        e = refused(() -> pd.regDmabufMr(-PAGE, PAGE, -PAGE, buf, rw));
        assertEquals(Errno.EINVAL, e.errno(), "an offset beyond 2^63 is beyond any buffer");
        assertTrue(e.getMessage().contains("0xfffffffffffff000"), e.getMessage());
        e = refused(() -> pd.regDmabufMr(SIZE - PAGE, Long.MAX_VALUE, SIZE - PAGE, buf, rw));
        assertEquals(Errno.EINVAL, e.errno());

        UContext proc = process();
        DmaBufHandle fd = buf.fd(proc);
        DmaBufs.close(proc, fd.handle());
        e = refused(() -> pd.regDmabufMr(0, PAGE, 0, fd, rw));
        assertEquals(Errno.EBADF, e.errno(), "a closed fd");
        assertTrue(e.getMessage().contains("fd " + fd.handle()), e.getMessage());
        assertEquals(Errno.EBADF, errno(() -> pd.regDmabufMr(0, PAGE, 0, (DmaBufHandle) null, rw)));

        assertTrue(ctx.resources().stream().filter(r -> r.type().equals("mr")).count() == 1, "only the host region");
        assertNothingLeft(buf, maps);
        buf.put();
        assertEquals(Errno.EBADF, errno(() -> pd.regDmabufMr(0, PAGE, 0, buf, rw)), "a released buffer");
        proc.close();
    }

    @Test
    void reregKeepsTheBuffersTranslationAndChecksTheDmabufFlagSet() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        MemoryRegion mr = pd.regDmabufMr(0, SIZE, 0, buf, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
        int key = mr.rkey();
        ErrnoException e = refused(() -> mr.rereg(ReregFlags.CHANGE_TRANSLATION, null, host, PAGE, 0));
        assertEquals(Errno.EOPNOTSUPP, e.errno());
        assertTrue(e.getMessage().contains("0x" + Long.toHexString(host)), e.getMessage());
        assertEquals(Errno.EINVAL, errno(() -> mr.rereg(ReregFlags.CHANGE_ACCESS, null, 0, 0,
                Access.LOCAL_WRITE | Access.ON_DEMAND)));
        assertEquals(key, mr.rkey(), "a refused rereg changes nothing");
        mr.rereg(ReregFlags.CHANGE_ACCESS, null, 0, 0, Access.REMOTE_READ);
        assertEquals(Access.REMOTE_READ, mr.access());
        assertEquals(SIZE, mr.length());
        assertEquals(WcStatus.REM_ACCESS_ERR, write(0, 8, 0, mr.rkey()), "no remote write any more");
        byte[] data = pattern(256, 4);
        cpuWrite(buf, 512, data);
        assertEquals(WcStatus.SUCCESS, read(0, 256, 512, mr.rkey()));
        assertArrayEquals(data, f.read(host, 256));
        mr.destroy();
        assertTrue(buf.attachments().isEmpty());
        buf.put();
    }

    @Test
    void vramReachedPeerToPeerThenMovedToHostMemoryIsMappedAgainOnTheNextAccess() {
        VramExporter ex = new VramExporter(bufs, P2pDma.of(f.machine), f.machine.pci().function("03:00.0"), 2,
                Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        int maps = f.machine.activeDmaMappings(hca);
        MemoryRegion mr = pd.regDmabufMr(0, SIZE, 0x40000, buf, Fixture.ALL_REMOTE);
        assertEquals(Target.VRAM, ex.placement(buf).orElseThrow(), "peer-to-peer: the buffer stays in VRAM");
        long vramOff = ex.vramOffset(buf);
        byte[] one = pattern(8192, 5);
        f.write(host, one);
        assertEquals(WcStatus.SUCCESS, write(0, one.length, 0x40000 + 4096, mr.rkey()));
        byte[] inBar = new byte[one.length];
        f.machine.pci().function("03:00.0").bar(2).orElseThrow().memory().read(vramOff + 4096, MemorySegment.ofArray(inBar));
        assertArrayEquals(one, inBar, "the HCA wrote VRAM through the switch");

        int before = f.provider().invalidations.size();
        migrate(ex, buf, Target.HOST);
        assertEquals(before + 1, f.provider().invalidations.size(), "move_notify told the driver");
        assertArrayEquals(new long[]{0x40000, SIZE}, f.provider().invalidations.getLast());
        assertEquals("0", res(mr).get("dmabuf-mapped"), "move_notify unmapped");
        assertEquals(maps, f.machine.activeDmaMappings(hca), "no stale mapping stays");
        assertArrayEquals(one, cpuRead(buf, 4096, one.length), "the move kept the bytes");

        byte[] two = pattern(8192, 6);
        f.write(host + 8192, two);
        assertEquals(WcStatus.SUCCESS, write(8192, two.length, 0x40000 + 20_000, mr.rkey()));
        assertEquals(Target.HOST, ex.placement(buf).orElseThrow());
        assertArrayEquals(two, cpuRead(buf, 20_000, two.length), "the write landed in the new placement");
        Map<String, String> r = res(mr);
        assertEquals("1", r.get("dmabuf-mapped"));
        assertEquals("2", r.get("dmabuf-maps"), "mapped again on the access after the move");
        assertEquals("1", r.get("dmabuf-moves"));

        migrate(ex, buf, Target.VRAM);
        assertEquals(WcStatus.SUCCESS, read(2 * SIZE, SIZE, 0x40000, mr.rkey()));
        byte[] all = f.read(host + 2 * SIZE, SIZE);
        assertArrayEquals(one, Arrays.copyOfRange(all, 4096, 4096 + one.length));
        assertArrayEquals(two, Arrays.copyOfRange(all, 20_000, 20_000 + two.length));
        assertEquals("3", res(mr).get("dmabuf-maps"));
        assertTrue(f.machine.dmaDebug().reports().isEmpty(), "no stale address was used: " + f.machine.dmaDebug().reports());
        assertTrue(f.machine.iommu().faults().isEmpty());

        mr.destroy();
        assertNothingLeft(buf, maps);
        buf.put();
        // the last move's worker drops its own reference just after it signals the move fence
        Eventually.eventually(buf::isReleased, Duration.ofSeconds(10), "dma-buf " + buf.ino() + " released");
        assertEquals(16L << 30, ex.freeVram());
    }

    @Test
    void aRevokedBufferFailsTheNextAccessWithRemoteAccessError() {
        VramExporter ex = new VramExporter(bufs, P2pDma.of(f.machine), f.machine.pci().function("03:00.0"), 2,
                Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        MemoryRegion mr = pd.regDmabufMr(0, SIZE, 0, buf, Fixture.ALL_REMOTE);
        assertEquals(WcStatus.SUCCESS, write(0, 64, 0, mr.rkey()));
        buf.resv().lock();
        try {
            ex.revoke(buf, "test revokes");
        } finally {
            buf.resv().unlock();
        }
        assertEquals("0", res(mr).get("dmabuf-mapped"));
        assertEquals(WcStatus.REM_ACCESS_ERR, write(0, 64, 0, mr.rkey()), "the map fails with ENODEV");
        mr.destroy();
        assertTrue(buf.attachments().isEmpty());
        assertTrue(f.machine.dmaDebug().reports().isEmpty(), f.machine.dmaDebug().reports().toString());
        buf.put();
    }

    @Test
    void anExporterThatRefusesTheHcaLeavesNothingAttached() {
        VramExporter ex = new VramExporter(bufs, P2pDma.of(f.machine), f.machine.pci().function("03:00.0"), 2,
                Policy.REFUSE);
        DmaBuf buf = ex.allocate(SIZE);
        VerbsContext far = f.core.device("rxe1").orElseThrow().open(f.mm);
        ProtectionDomain farPd = far.allocPd();
        ErrnoException e = refused(() -> farPd.regDmabufMr(0, SIZE, 0, buf, Access.LOCAL_WRITE));
        assertEquals(Errno.EBUSY, e.errno(), "05:00.0 is behind another root port: no peer-to-peer, no move allowed");
        assertTrue(buf.attachments().isEmpty());
        assertEquals(1, buf.refCount());
        assertTrue(far.resources().stream().noneMatch(r -> r.type().equals("mr")));
        far.close();
        buf.put();
    }

    @Test
    void unregisteringTheDeviceDetachesEveryDmabufRegion() {
        DmaBuf buf = new SystemHeap(bufs).allocate(SIZE);
        pd.regDmabufMr(0, SIZE, 0, buf, Fixture.ALL_REMOTE);
        pd.regDmabufMr(PAGE, PAGE, PAGE, buf, 0);
        assertEquals(2, buf.attachments().size());
        f.provider().handle().unregister();
        assertTrue(ctx.isDisassociated());
        assertTrue(buf.attachments().isEmpty());
        assertEquals(0, f.machine.activeDmaMappings(hca));
        assertEquals(1, buf.refCount());
        assertTrue(f.machine.dmaDebug().reports().isEmpty(), f.machine.dmaDebug().reports().toString());
        buf.put();
    }

    @Test
    void hotUnplugOfTheHcaReleasesTheAttachment() {
        VramExporter ex = new VramExporter(bufs, P2pDma.of(f.machine), f.machine.pci().function("03:00.0"), 2,
                Policy.MIGRATE_TO_HOST);
        DmaBuf buf = ex.allocate(SIZE);
        pd.regDmabufMr(0, SIZE, 0, buf, Fixture.ALL_REMOTE);
        f.machine.hotUnplug(hca);
        assertTrue(ctx.isDisassociated());
        assertTrue(buf.attachments().isEmpty());
        assertEquals(1, buf.refCount());
        assertTrue(f.machine.dmaDebug().reports().isEmpty(), f.machine.dmaDebug().reports().toString());
        migrate(ex, buf, Target.HOST);
        buf.put();
    }

    /** A device without invalidation pins the attachment ({@code ib_umem_dmabuf_get_pinned}): the buffer cannot move. */
    @Test
    void anHcaWithoutInvalidationPinsTheBufferWhereItIs() {
        try (Fixture g = new Fixture(b -> b.caps(EnumSet.of(DeviceCap.MEM_WINDOW)))) {
            VerbsContext c = g.open();
            ProtectionDomain p = c.allocPd();
            DmaBufs registry = DmaBufs.of(g.machine);
            VramExporter ex = new VramExporter(registry, P2pDma.of(g.machine), g.machine.pci().function("03:00.0"), 2,
                    Policy.MIGRATE_TO_HOST);
            DmaBuf buf = ex.allocate(SIZE);
            MemoryRegion mr = p.regDmabufMr(0, SIZE, 0, buf, Fixture.ALL_REMOTE);
            assertEquals(1, buf.attachments().getFirst().pinCount());
            assertEquals("pinned", c.resources().stream().filter(r -> r.type().equals("mr")).findFirst().orElseThrow()
                    .attrs().get("importer"));
            buf.resv().lock();
            try {
                assertEquals(Errno.EBUSY, errno(() -> ex.migrate(buf, Target.HOST, "test")), "a pinned buffer cannot move");
            } finally {
                buf.resv().unlock();
            }
            assertEquals(Target.VRAM, ex.placement(buf).orElseThrow());
            mr.destroy();
            assertTrue(buf.attachments().isEmpty(), "dereg unpinned and detached");
            migrate(ex, buf, Target.HOST);
            buf.put();
        }
    }
}
