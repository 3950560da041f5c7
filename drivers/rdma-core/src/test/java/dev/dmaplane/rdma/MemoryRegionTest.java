package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.spi.HwPd;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.ReregFlags;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.EnumSet;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Memory registration as {@code ibv_reg_mr(3)} documents it and the kernel does it: {@code ib_check_mr_access}
 * (remote write or atomic without local write, unknown bits, ODP and flush support), the range checks of
 * {@code ib_uverbs_reg_mr} and {@code ib_umem_get} (zero length, overflow, IOVA page offset), pinning with
 * {@code FOLL_LONGTERM} plus {@code FOLL_WRITE} exactly when {@code ib_access_writable}, one DMA_BIDIRECTIONAL
 * scatter-gather mapping, {@code ib_umem_find_best_pgsz}, and rxe's keys ({@code rxe_mr_init}: index and 8-bit
 * key, lkey = rkey). Every refusal leaves nothing pinned, mapped or charged.
 */
class MemoryRegionTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    private PciFunction hca() {
        return f.machine.pci().function("04:00.0");
    }

    private record Snapshot(long pins, long pinnedByMm, int mappings, int objects) {
    }

    private Snapshot snapshot() {
        return new Snapshot(f.machine.memory().pinsOutstanding(), f.mm.pinnedPages(),
                f.machine.activeDmaMappings(hca()), f.device().objectCount());
    }

    @Test
    void registrationPinsEveryPageLongTermMapsOnceAndDeregistrationGivesAllBack() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long a = f.alloc(64 * 1024);
        Snapshot before = snapshot();
        long pinsReleased = f.machine.memory().pinsReleased();
        long since = f.machine.tracer().lastSeq();

        MemoryRegion mr = pd.regMr(a + 100, 40_000, Access.LOCAL_WRITE);
        assertEquals(10, f.machine.memory().pinsOutstanding() - before.pins(), "bytes 100..40099 touch 10 pages");
        assertEquals(10, f.mm.pinnedPages() - before.pinnedByMm());
        assertEquals(1, f.machine.activeDmaMappings(hca()) - before.mappings(), "one sg mapping per region");
        List<TraceEvent> pins = f.machine.tracer().since(since).stream().filter(e -> e.kind() == TraceKind.PIN).toList();
        assertEquals(1, pins.size());
        assertTrue(pins.getFirst().detail().contains("[WRITE, LONGTERM]"), pins.getFirst().detail());
        assertEquals(a + 100, mr.addr());
        assertEquals(a + 100, mr.iova());
        assertEquals(40_000, mr.length());
        assertFalse(mr.isOnDemand());

        mr.destroy();
        assertEquals(before, snapshot(), "dereg unmaps and unpins everything");
        assertEquals(pinsReleased + 10, f.machine.memory().pinsReleased());
        assertTrue(mr.isDestroyed());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, mr::destroy).errno());
    }

    @Test
    void writePinOnlyWhenTheAccessIsWritable() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long ro = f.mm.mmapAnonymous(4 * PAGE, Prot.PROT_READ);
        long since = f.machine.tracer().lastSeq();
        MemoryRegion readOnly = pd.regMr(ro, 4 * PAGE, Access.REMOTE_READ);
        assertTrue(f.machine.tracer().since(since).stream()
                .anyMatch(e -> e.kind() == TraceKind.PIN && e.detail().contains("flags=[LONGTERM]")));
        Snapshot s = snapshot();
        // LOCAL_WRITE, REMOTE_WRITE (with LOCAL_WRITE), REMOTE_ATOMIC (with LOCAL_WRITE) and MW_BIND all need FOLL_WRITE
        for (int acc : new int[]{Access.LOCAL_WRITE, Access.LOCAL_WRITE | Access.REMOTE_WRITE,
                Access.LOCAL_WRITE | Access.REMOTE_ATOMIC, Access.MW_BIND}) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> pd.regMr(ro, 4 * PAGE, acc));
            assertEquals(Errno.EFAULT, e.errno(), Access.toString(acc));
            assertEquals(s, snapshot(), "nothing stays pinned, mapped or charged");
        }
        readOnly.destroy();
    }

    @Test
    void accessAndRangeRefusalsLeaveNothingBehind() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long a = f.alloc(16 * PAGE);
        Snapshot s = snapshot();
        Object[][] cases = {
                {Access.REMOTE_WRITE, a, PAGE, a, Errno.EINVAL},
                {Access.REMOTE_ATOMIC | Access.REMOTE_READ, a, PAGE, a, Errno.EINVAL},
                {1 << 15, a, PAGE, a, Errno.EINVAL},
                {Access.FLUSH_GLOBAL | Access.LOCAL_WRITE, a, PAGE, a, Errno.EOPNOTSUPP},
                {Access.LOCAL_WRITE, a, 0L, a, Errno.EINVAL},
                {Access.LOCAL_WRITE, a, -1L, a, Errno.EINVAL},
                {Access.LOCAL_WRITE, -PAGE, 2 * PAGE, 0L, Errno.EINVAL},
                {Access.LOCAL_WRITE, a, 1L << 41, a, Errno.EINVAL},
                {Access.LOCAL_WRITE, a + 8, PAGE, 0x100000L, Errno.EINVAL},
                {Access.LOCAL_WRITE, a + 15 * PAGE, 2 * PAGE, a + 15 * PAGE, Errno.EFAULT},
        };
        for (Object[] k : cases) {
            int acc = (int) k[0];
            long addr = (long) k[1];
            long len = (long) k[2];
            long iova = (long) k[3];
            ErrnoException e = assertThrows(ErrnoException.class, () -> pd.regMr(addr, len, iova, acc),
                    Access.toString(acc) + " " + len);
            assertEquals(k[4], e.errno(), e.getMessage());
            assertEquals(s, snapshot(), e.getMessage());
        }
        MemoryRegion ok = pd.regMr(a + 8, PAGE, 0x100008L, Fixture.ALL_REMOTE);
        assertEquals(0x100008L, ok.iova(), "ibv_reg_mr_iova: any IOVA with the address's page offset");
    }

    @Test
    void onDemandNeedsTheDeviceCapability() {
        f.close();
        f = new Fixture(b -> b.caps(EnumSet.of(DeviceCap.MEM_WINDOW)));
        ProtectionDomain pd = f.open().allocPd();
        long a = f.alloc(PAGE);
        assertEquals(Errno.EOPNOTSUPP, assertThrows(ErrnoException.class,
                () -> pd.regMr(a, PAGE, Access.ON_DEMAND | Access.LOCAL_WRITE)).errno());
    }

    @Test
    void keysAreIndexAndKeyByteAndReregistrationChangesTheKeyByte() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        MemoryAccess mem = f.provider().handle().memory();
        long a = f.alloc(4 * PAGE);
        MemoryRegion mr = pd.regMr(a, 4 * PAGE, Fixture.ALL_REMOTE);
        MemoryRegion other = pd.regMr(a, PAGE, Access.LOCAL_WRITE);
        assertEquals(mr.lkey(), mr.rkey(), "rxe: lkey and rkey are one key");
        int index = mr.lkey() >>> 8;
        assertTrue(index >= 1 && index <= 0x10000, "region indices are 0x1..0x10000");
        assertNotEquals(index, other.lkey() >>> 8);
        int old = mr.lkey();
        try (DmaLease l = mem.local((HwPd) pd, old, a, 16, 0)) {
            assertEquals(16, l.length());
        }

        mr.rereg(ReregFlags.CHANGE_ACCESS, null, 0, 0, Access.LOCAL_WRITE | Access.REMOTE_READ);
        assertEquals(index, mr.lkey() >>> 8, "the index stays");
        assertNotEquals(old & 0xFF, mr.lkey() & 0xFF, "the 8-bit key changes");
        AccessFault stale = assertThrows(AccessFault.class, () -> mem.local((HwPd) pd, old, a, 16, 0));
        assertEquals(WcStatus.LOC_PROT_ERR, stale.status());
        assertTrue(stale.getMessage().contains("stale"), stale.getMessage());
        mem.local((HwPd) pd, mr.lkey(), a, 16, Access.LOCAL_WRITE).close();
        assertEquals(Access.LOCAL_WRITE | Access.REMOTE_READ, mr.access());

        int last = mr.lkey();
        mr.destroy();
        assertEquals(WcStatus.LOC_PROT_ERR, assertThrows(AccessFault.class, () -> mem.local((HwPd) pd, last, a, 16, 0)).status());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mr.rereg(ReregFlags.CHANGE_ACCESS, null, 0, 0, 0)).errno());
    }

    @Test
    void reregMovesTheTranslationAndThePd() {
        VerbsContext c = f.open();
        ProtectionDomain pd1 = c.allocPd();
        ProtectionDomain pd2 = c.allocPd();
        long a = f.alloc(8 * PAGE);
        long b = f.alloc(2 * PAGE);
        MemoryRegion mr = pd1.regMr(a, 8 * PAGE, Access.LOCAL_WRITE);
        long pins = f.machine.memory().pinsOutstanding();
        int key = mr.lkey();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> mr.rereg(0, null, 0, 0, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> mr.rereg(8, null, 0, 0, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mr.rereg(ReregFlags.CHANGE_ACCESS, null, 0, 0, Access.REMOTE_WRITE)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mr.rereg(ReregFlags.CHANGE_TRANSLATION, null, b, 0, 0)).errno());
        ErrnoException silent = assertThrows(ErrnoException.class,
                () -> mr.rereg(ReregFlags.CHANGE_TRANSLATION, null, b, 2 * PAGE, Access.LOCAL_WRITE | Access.REMOTE_READ));
        assertEquals(Errno.EINVAL, silent.errno(), "libibverbs verbs.c: access without IBV_REREG_MR_CHANGE_ACCESS");
        assertTrue(silent.getMessage().contains("access 0x"), silent.getMessage());
                assertEquals(key, mr.lkey(), "refused reregistrations change nothing");

        mr.rereg(ReregFlags.CHANGE_TRANSLATION | ReregFlags.CHANGE_PD, pd2, b, 2 * PAGE, 0);
        assertEquals(pins - 6, f.machine.memory().pinsOutstanding(), "8 pages unpinned, 2 pinned");
        assertEquals(b, mr.addr());
        assertEquals(b, mr.iova());
        assertEquals(2 * PAGE, mr.length());
        assertSame(pd2, mr.pd());
        pd1.destroy();
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, pd2::destroy).errno());
        assertEquals(1, f.machine.activeDmaMappings(hca()) - 0, "only the new mapping is left");
    }

    @Test
    void aPdInUseCannotBeDeallocated() {
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long a = f.alloc(PAGE);
        MemoryRegion mr = pd.regMr(a, PAGE, 0);
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, pd::destroy).errno());
        assertFalse(pd.isDestroyed());
        mr.destroy();
        pd.destroy();
        assertEquals(0, f.device().objectCount());
    }

    @Test
    void deviceAndCgroupLimits() {
        f.close();
        f = new Fixture(b -> b.maxMr(2));
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        long a = f.alloc(4 * PAGE);
        pd.regMr(a, PAGE, 0);
        pd.regMr(a, PAGE, 0);
        Snapshot s = snapshot();
        ErrnoException e = assertThrows(ErrnoException.class, () -> pd.regMr(a, PAGE, 0));
        assertEquals(Errno.ENOMEM, e.errno(), "max_mr reached");
        assertEquals(s, snapshot());

        f.device().setLimits(new ResourceLimits(10, 3));
        assertEquals(Errno.EAGAIN, assertThrows(ErrnoException.class, c::allocPd).errno(), "rdma.max hca_object");
        assertEquals(3, f.device().objectCount());
    }

    @Test
    void bestPageSizeWithTheIommuFollowsIovaContiguity() {
        ProtectionDomain pd = f.open().allocPd();
        long va = 0x7e00_0000_0000L;
        f.mm.mmapAnonymousFixed(va, 8L << 20, Prot.PROT_READ | Prot.PROT_WRITE);
        touchBackwards(va, 4L << 20);
        MemoryRegion aligned = pd.regMr(va, 2L << 20, Access.LOCAL_WRITE);
        assertEquals(2L << 20, aligned.pageSize(),
                "512 scattered frames get one size-aligned IOVA range: one 2 MiB page translates them");
        assertEquals(1, ((HwMr) aligned).dmaBlocks().length);
        MemoryRegion offset = pd.regMr(va + PAGE, 2L << 20, Access.LOCAL_WRITE);
        assertEquals(PAGE, offset.pageSize(), "a VA 4 KiB off the IOVA's alignment allows only 4 KiB pages");
        assertEquals(512, ((HwMr) offset).dmaBlocks().length);
        MemoryRegion zeroBased = pd.regMr(va + PAGE, 2L << 20, PAGE, Access.LOCAL_WRITE);
        assertEquals(PAGE, zeroBased.pageSize());
        MemoryRegion small = pd.regMr(va, 3 * PAGE, Access.LOCAL_WRITE);
        assertEquals(4 * PAGE, small.pageSize(), "never larger than what covers the region's span");
        assertEquals(1, ((HwMr) small).dmaBlocks().length);
    }

    @Test
    void bestPageSizeWithoutIommuFollowsPhysicalContiguity() {
        f.close();
        String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("enabled: true", "enabled: false")
                .replace("memory: 64GiB", "memory: 1GiB");
        f = new Fixture(Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT), b -> b);
        ProtectionDomain pd = f.open().allocPd();
        long va = 0x7e00_0000_0000L;
        f.mm.mmapAnonymousFixed(va, 4L << 20, Prot.PROT_READ | Prot.PROT_WRITE);
        touchBackwards(va, 2L << 20);
        MemoryRegion mr = pd.regMr(va, 2L << 20, Access.LOCAL_WRITE);
        assertEquals(PAGE, mr.pageSize(), "frames faulted in backwards are not physically contiguous");
        long[] blocks = ((HwMr) mr).dmaBlocks();
        assertEquals(512, blocks.length);
        assertEquals(f.mm.physAddr(va).orElseThrow(), blocks[0], "without an IOMMU the HCA sees physical addresses");
    }

    private void touchBackwards(long va, long len) {
        for (long off = len - PAGE; off >= 0; off -= PAGE) {
            f.mm.write(va + off, MemorySegment.ofArray(new byte[]{1}));
        }
    }

    @Test
    void theHcaReachesRegisteredBytesThroughTheIommu() {
        ProtectionDomain pd = f.open().allocPd();
        long a = f.alloc(3 * PAGE);
        byte[] text = "bytes the HCA reads through its IOMMU domain, across a page boundary".getBytes();
        f.write(a + PAGE - 20, text);
        MemoryRegion mr = pd.regMr(a, 3 * PAGE, Access.LOCAL_WRITE);
        MemoryAccess mem = f.provider().handle().memory();
        byte[] back = new byte[text.length];
        try (DmaLease l = mem.local((HwPd) pd, mr.lkey(), a + PAGE - 20, text.length, 0)) {
            l.read(0, MemorySegment.ofArray(back));
            assertTrue(l.segments().stream().allMatch(s -> s.dmaAddress() < 1L << 32), "IOVAs, below 4 GiB first");
        }
        assertArrayEquals(text, back);
        try (DmaLease l = mem.local((HwPd) pd, mr.lkey(), a + 2 * PAGE, 8, Access.LOCAL_WRITE)) {
            l.write(0, MemorySegment.ofArray(new byte[]{9, 8, 7, 6, 5, 4, 3, 2}));
            assertEquals(0x0203040506070809L, l.fetchAndAdd(0, 1));
        }
        assertEquals(0x0203040506070809L + 1, MemorySegment.ofArray(f.read(a + 2 * PAGE, 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
        assertEquals(WcStatus.LOC_PROT_ERR, assertThrows(AccessFault.class,
                () -> mem.local((HwPd) pd, mr.lkey(), a + 3 * PAGE - 4, 8, 0)).status(), "past the region's end");
        MemoryRegion ro = pd.regMr(a, PAGE, 0);
        assertEquals(WcStatus.LOC_PROT_ERR, assertThrows(AccessFault.class,
                () -> mem.local((HwPd) pd, ro.lkey(), a, 8, Access.LOCAL_WRITE)).status(), "no local write");
        ProtectionDomain other = f.open().allocPd();
        assertEquals(WcStatus.LOC_PROT_ERR, assertThrows(AccessFault.class,
                () -> mem.local((HwPd) other, mr.lkey(), a, 8, 0)).status(), "another PD");
        List<ResourceEntry> res = f.device().resources();
        ResourceEntry e = res.stream().filter(r -> r.type().equals("mr") && r.attrs().get("mrlen").equals("12288")).findFirst().orElseThrow();
        assertEquals("0x" + Integer.toHexString(mr.lkey()), e.attrs().get("lkey"));
        assertEquals("3", e.attrs().get("pinned"));
    }
}
