package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.*;

/**
 * BARs as {@code pci_resource_start/len} describe them and their two backings: MMIO register blocks answered by a
 * device model (unclaimed reads return all-ones, as a master abort does on PCI) and device memory (VRAM) that
 * costs nothing until written, allocated lazily in 2 MiB chunks.
 */
class BarTest {
    private static final long GIB = 1L << 30;
    private final DeviceMemoryPool pool = new DeviceMemoryPool();

    @AfterEach
    void close() {
        pool.close();
    }

    private Bar memoryBar(long size) {
        ConfigSpace cs = ConfigSpace.builder(0x1da0, 1, 0x030200).bar(2, size, true, true).build();
        return new Bar(2, size, true, true, cs, new Bar.Memory(size, "test BAR2", pool));
    }

    @Test
    void sixteenGibBarCostsNothingUntilTouched() {
        Bar bar = memoryBar(16 * GIB);
        Bar.Memory mem = bar.memory();
        assertEquals(16 * GIB, mem.size());
        assertEquals(0, mem.committedBytes());
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096);
            buf.fill((byte) 0x5a);
            mem.read(15 * GIB, buf);
            assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 0), "never-written memory reads as zeros");
            assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 4095));
        }
        assertEquals(0, mem.committedBytes(), "reading untouched memory allocates nothing");
    }

    @Test
    void evenAHugeBarIsFreeUntilWritten() {
        Bar.Memory mem = memoryBar(64L << 40).memory();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment one = a.allocate(1);
            one.set(ValueLayout.JAVA_BYTE, 0, (byte) 7);
            mem.write((64L << 40) - 1, one);
            MemorySegment back = a.allocate(1);
            mem.read((64L << 40) - 1, back);
            assertEquals(7, back.get(ValueLayout.JAVA_BYTE, 0));
        }
        assertEquals(Bar.Memory.CHUNK_SIZE, mem.committedBytes());
    }

    @Test
    void writesSpanningChunksReadBackAndCommitOnlyTouchedChunks() {
        Bar.Memory mem = memoryBar(16 * GIB).memory();
        long off = 8 * GIB + Bar.Memory.CHUNK_SIZE - 6;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(12);
            for (int i = 0; i < 12; i++) {
                src.set(ValueLayout.JAVA_BYTE, i, (byte) (i + 1));
            }
            mem.write(off, src);
            assertEquals(2 * Bar.Memory.CHUNK_SIZE, mem.committedBytes(), "the write straddles two chunks");
            MemorySegment dst = a.allocate(16);
            mem.read(off - 2, dst);
            byte[] got = dst.toArray(ValueLayout.JAVA_BYTE);
            assertArrayEquals(new byte[]{0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0}, got);
        }
    }

    @Test
    void segmentViewSharesTheBackingWithinOneChunk() {
        Bar.Memory mem = memoryBar(64L << 20).memory();
        MemorySegment view = mem.segment(4096, 8);
        view.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0x1122334455667788L);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment dst = a.allocate(8);
            mem.read(4096, dst);
            assertEquals(0x1122334455667788L, dst.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
        }
        ErrnoException e = assertThrows(ErrnoException.class, () -> mem.segment(Bar.Memory.CHUNK_SIZE - 4, 8));
        assertEquals(Errno.EINVAL, e.errno());
    }

    /** A read in place of never-written memory finds nothing to view and commits nothing; written memory is viewed live. */
    @Test
    void committedSegmentViewsOnlyWrittenChunks() {
        Bar.Memory mem = memoryBar(64L << 20).memory();
        assertEquals(Optional.empty(), mem.committedSegment(3 * Bar.Memory.CHUNK_SIZE + 64, 4096));
        assertEquals(0, mem.committedBytes(), "looking commits nothing");
        mem.segment(3 * Bar.Memory.CHUNK_SIZE + 64, 8).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0x0102030405060708L);
        MemorySegment view = mem.committedSegment(3 * Bar.Memory.CHUNK_SIZE + 64, 4096).orElseThrow();
        assertEquals(0x0102030405060708L, view.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
        assertEquals(Bar.Memory.CHUNK_SIZE, mem.committedBytes());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> mem.committedSegment(Bar.Memory.CHUNK_SIZE - 4, 8)).errno(), "crosses a chunk");
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> mem.committedSegment(64L << 20, 8)).errno(), "past the BAR");
    }

    @Test
    void outOfRangeAccessesAreEfaultNamingTheOffset() {
        Bar.Memory mem = memoryBar(1L << 20).memory();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(16);
            ErrnoException past = assertThrows(ErrnoException.class, () -> mem.read((1L << 20) - 8, buf));
            assertEquals(Errno.EFAULT, past.errno());
            assertTrue(past.getMessage().contains("0xffff8"), past.getMessage());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> mem.write(-16, buf)).errno());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> mem.write(2L << 20, buf)).errno());
        }
        assertEquals(0, mem.committedBytes(), "a refused write allocates nothing");
    }

    @Test
    void closedPoolRefusesAccessWithEnodev() {
        Bar.Memory mem = memoryBar(1L << 20).memory();
        pool.close();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(8);
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> mem.write(0, buf)).errno());
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> mem.read(0, buf)).errno());
        }
    }

    /** A device's fast clear (amdgpu's {@code AMDGPU_GEM_CREATE_VRAM_CLEARED}) commits no never-written chunk. */
    @Test
    void zeroingUntouchedChunksCommitsNothing() {
        Bar.Memory mem = memoryBar(16 * GIB).memory();
        mem.zero(0, 16 * GIB);
        assertEquals(0, mem.committedBytes(), "never-written chunks already read as zeros");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096);
            buf.fill((byte) 0x5a);
            mem.read(9 * GIB, buf);
            assertEquals(-1, buf.mismatch(a.allocate(4096)), "zeroed memory reads as zeros");
        }
        assertEquals(0, mem.committedBytes());
    }

    /** Zeroing a committed chunk clears only the range, keeps the chunk and the live views of it. */
    @Test
    void zeroingACommittedChunkClearsOnlyTheRangeAndKeepsViews() {
        Bar.Memory mem = memoryBar(64L << 20).memory();
        long chunk = Bar.Memory.CHUNK_SIZE;
        MemorySegment view = mem.segment(chunk - 4096, 4096);
        view.fill((byte) 0x11);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(4096);
            src.fill((byte) 0x22);
            mem.write(chunk, src);
            assertEquals(2 * chunk, mem.committedBytes());

            mem.zero(chunk - 100, 200);  // the last 100 bytes of chunk 0, the first 100 of chunk 1, then 3 untouched chunks
            mem.zero(2 * chunk, 3 * chunk);
            assertEquals(2 * chunk, mem.committedBytes(), "committed chunks stay committed, untouched stay free");

            MemorySegment back = a.allocate(8192);
            mem.read(chunk - 4096, back);
            for (int i = 0; i < 8192; i++) {
                byte want = i < 3996 ? (byte) 0x11 : i < 4196 ? 0 : (byte) 0x22;
                assertEquals(want, back.get(ValueLayout.JAVA_BYTE, i), "byte " + i);
            }
            assertEquals(0, view.get(ValueLayout.JAVA_BYTE, 4095), "the live view sees the zeros");
            view.set(ValueLayout.JAVA_BYTE, 4095, (byte) 0x33);
            MemorySegment one = a.allocate(1);
            mem.read(chunk - 1, one);
            assertEquals(0x33, one.get(ValueLayout.JAVA_BYTE, 0), "the view still writes the BAR's memory");
        }
    }

    /** {@code zero} checks its range as {@code write} does and changes nothing when it refuses. */
    @Test
    void zeroRefusesBadRangesAsWriteDoes() {
        Bar.Memory mem = memoryBar(1L << 20).memory();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment src = a.allocate(16);
            src.fill((byte) 0x44);
            mem.write((1L << 20) - 16, src);
            ErrnoException past = assertThrows(ErrnoException.class, () -> mem.zero((1L << 20) - 8, 16));
            assertEquals(Errno.EFAULT, past.errno());
            assertTrue(past.getMessage().contains("0xffff8"), past.getMessage());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> mem.zero(-16, 16)).errno());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> mem.zero(2L << 20, 1)).errno());
            ErrnoException negative = assertThrows(ErrnoException.class, () -> mem.zero(0, -1));
            assertEquals(Errno.EINVAL, negative.errno());
            assertTrue(negative.getMessage().contains("-1"), negative.getMessage());
            assertEquals(Errno.ERANGE, assertThrows(ErrnoException.class, () -> mem.zero(16, Long.MAX_VALUE)).errno());
            MemorySegment back = a.allocate(16);
            mem.read((1L << 20) - 16, back);
            assertEquals(-1, back.mismatch(src), "a refused zero leaves the memory as it was");
            pool.close();
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> mem.zero(0, 8)).errno());
        }
        assertEquals(1L << 20, mem.committedBytes(), "the one written (1 MiB, the BAR's size) chunk, nothing more");
    }

    @Test
    void mmioWithoutHandlerReadsAllOnesAndDropsWrites() {
        ConfigSpace cs = ConfigSpace.builder(0x1da0, 3, 0x010802).bar(0, 16384, true, false).build();
        Bar bar = new Bar(0, 16384, true, false, cs, new Bar.Mmio(16384, "test BAR0"));
        Bar.Mmio mmio = bar.mmio();
        assertEquals(0xFFFF_FFFFL, mmio.read(0, 4));
        assertEquals(0xFFL, mmio.read(3, 1));
        assertEquals(-1L, mmio.read(8, 8));
        mmio.write(0, 4, 1);
        assertTrue(mmio.handler().isEmpty());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, bar::memory).errno());
    }

    @Test
    void mmioRoutesToTheAttachedHandlerWithChecks() {
        Bar.Mmio mmio = new Bar.Mmio(4096, "test BAR0");
        List<String> log = new ArrayList<>();
        MmioHandler regs = new MmioHandler() {
            @Override
            public long read(long offset, int size) {
                log.add("r" + offset + "/" + size);
                return 0x1234;
            }

            @Override
            public void write(long offset, int size, long value) {
                log.add("w" + offset + "/" + size + "=" + Long.toHexString(value));
            }
        };
        mmio.attach(regs);
        assertEquals(0x1234, mmio.read(0x10, 4));
        mmio.write(0x14, 2, 0xABCDEF);
        assertEquals(List.of("r16/4", "w20/2=cdef"), log, "a 2-byte store passes only its low 2 bytes");
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> mmio.attach(regs)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> mmio.read(2, 4)).errno(), "misaligned");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> mmio.read(0, 3)).errno());
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> mmio.read(4096, 4)).errno());
        mmio.detach(regs);
        assertEquals(0xFFFF_FFFFL, mmio.read(0x10, 4));
        assertEquals(2, log.size(), "refused accesses never reach the handler");
    }

    @Test
    void barAddressFollowsTheConfigRegister() {
        Bar bar = memoryBar(16 * GIB);
        assertEquals(0, bar.address());
        ConfigSpace cs = ConfigSpace.builder(0x1da0, 1, 0x030200).bar(2, 16 * GIB, true, true).build();
        Bar b2 = new Bar(2, 16 * GIB, true, true, cs, new Bar.Memory(16 * GIB, "x", pool));
        cs.write(PciRegs.BASE_ADDRESS_0 + 8, 4, 0);
        cs.write(PciRegs.BASE_ADDRESS_0 + 12, 4, 0x100);
        assertEquals(1L << 40, b2.address());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> new Bar(0, 3L << 20, true, true, cs, new Bar.Mmio(3L << 20, "x"))).errno());
    }
}
