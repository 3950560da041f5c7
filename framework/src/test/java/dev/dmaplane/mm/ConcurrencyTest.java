package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.mm.Prot.PROT_READ;
import static dev.dmaplane.mm.Prot.PROT_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Concurrent users of one address space, as the kernel allows them: faults and GUP share {@code mmap_lock} for
 * reading while {@code munmap} takes it for writing ({@code Documentation/mm/process_addrs.rst}); truncate reaches
 * the page table through {@code i_mmap} and the page-table lock only ({@code mm/truncate.c},
 * {@code unmap_mapping_range} in {@code mm/memory.c}). Every thread works on its own range; the bookkeeping
 * (pin and reference counts, allocated frames) must come out exact.
 */
class ConcurrencyTest {
    private static final int PAGE = (int) HostMemory.PAGE_SIZE;
    private static final int THREADS = 4;
    private static final int ROUNDS = 200;

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void pinUnpinMunmapOnDistinctRanges() throws Exception {
        try (HostMemory mem = new HostMemory(64L << 20)) {
            long start = mem.allocatedFrames();
            AddressSpace as = new AddressSpace(mem, new Tracer(), "threads");
            CyclicBarrier go = new CyclicBarrier(THREADS);
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            try {
                List<Future<Long>> results = new ArrayList<>();
                for (int t = 0; t < THREADS; t++) {
                    final byte tag = (byte) (t + 1);
                    Callable<Long> worker = () -> {
                        go.await(10, TimeUnit.SECONDS);
                        long checked = 0;
                        for (int round = 0; round < ROUNDS; round++) {
                            long va = as.mmapAnonymous(8 * PAGE, PROT_READ | PROT_WRITE);
                            byte[] data = new byte[8 * PAGE];
                            Arrays.fill(data, tag);
                            as.write(va, MemorySegment.ofArray(data));
                            PinnedPages pin = as.pin(va + PAGE, 6 * PAGE, EnumSet.of(PinFlags.WRITE));
                            long[] phys = pin.physAddrs();
                            as.munmap(va, 8 * PAGE);
                            for (long pa : phys) {
                                byte[] b = new byte[1];
                                mem.read(pa + 17, MemorySegment.ofArray(b));
                                if (b[0] != tag) {
                                    throw new AssertionError("frame 0x" + Long.toHexString(pa) + " holds " + b[0]
                                            + ", not " + tag);
                                }
                                if (mem.pinCount(pa >>> HostMemory.PAGE_SHIFT) != 1) {
                                    throw new AssertionError("pin count of 0x" + Long.toHexString(pa));
                                }
                                checked++;
                            }
                            pin.unpin();
                        }
                        return checked;
                    };
                    results.add(pool.submit(worker));
                }
                long total = 0;
                for (Future<Long> f : results) {
                    total += f.get(50, TimeUnit.SECONDS);
                }
                assertEquals((long) THREADS * ROUNDS * 6, total);
            } finally {
                pool.shutdownNow();
                assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
            }
            assertEquals(0, as.pinnedPages());
            assertEquals(0, as.residentPages());
            assertTrue(as.vmas().isEmpty());
            as.close();
            assertEquals(start, mem.allocatedFrames());
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void truncateRacesWithFaultsAndPinsOfTheSameFile() throws Exception {
        try (HostMemory mem = new HostMemory(64L << 20)) {
            Tracer tracer = new Tracer();
            MemFs fs = new MemFs(mem, tracer, "memfs0", false);
            long start = mem.allocatedFrames();
            Inode f = fs.create("/f");
            AddressSpace[] spaces = new AddressSpace[THREADS - 1];
            long[] bases = new long[spaces.length];
            for (int i = 0; i < spaces.length; i++) {
                spaces[i] = new AddressSpace(mem, tracer, "p" + i);
                bases[i] = spaces[i].mmapFile(f, 0, 16 * PAGE, PROT_READ | PROT_WRITE, true);
            }
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            try {
                List<Future<?>> futures = new ArrayList<>();
                futures.add(pool.submit(() -> {
                    for (int round = 0; round < ROUNDS; round++) {
                        f.truncate(16 * PAGE);
                        f.truncate((round % 16) * (long) PAGE);
                    }
                    return null;
                }));
                for (int i = 0; i < spaces.length; i++) {
                    AddressSpace as = spaces[i];
                    long base = bases[i];
                    futures.add(pool.submit(() -> {
                        for (int round = 0; round < ROUNDS; round++) {
                            try (PinnedPages p = as.pin(base, PAGE, EnumSet.of(PinFlags.WRITE))) {
                                mem.write(p.physAddrs()[0], MemorySegment.ofArray(new byte[]{1}));
                            } catch (ErrnoException e) {
                                if (e.errno() != Errno.EFAULT) {
                                    throw e;     // only "past the end of the file" may happen
                                }
                            }
                        }
                        return null;
                    }));
                }
                for (Future<?> fut : futures) {
                    fut.get(50, TimeUnit.SECONDS);
                }
            } finally {
                pool.shutdownNow();
                assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
            }
            for (AddressSpace as : spaces) {
                assertEquals(0, as.pinnedPages());
                as.close();
            }
            fs.close();
            assertEquals(start, mem.allocatedFrames(), "no frame leaked through the races");
        }
    }
}
