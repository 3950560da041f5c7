package dev.dmaplane.rdma;

import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Several QPs posting and polling on their own threads while other threads register and deregister regions,
 * allocate windows and list resources: every request completes once and successfully, counters add up, and
 * nothing deadlocks (the core's lock order: QP, then CQ, then event queues; region locks only around DMA).
 */
@Timeout(60)
class ConcurrencyTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final int PAIRS = 4;
    private static final int ROUNDS = 300;
    private final Fixture f = new Fixture();

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void postersPollersAndRegistrarsRunTogether() throws Exception {
        VerbsContext ctx = f.open();
        ProtectionDomain pd = ctx.allocPd();
        long buf = f.alloc(PAIRS * 2 * PAGE);
        MemoryRegion mr = pd.regMr(buf, PAIRS * 2 * PAGE, Fixture.ALL_REMOTE);
        List<QueuePair[]> pairs = new ArrayList<>();
        List<CompletionQueue> cqs = new ArrayList<>();
        for (int i = 0; i < PAIRS; i++) {
            CompletionQueue cq = ctx.createCq(64, null, 0);
            cqs.add(cq);
            pairs.add(Fixture.pair(pd, cq, QpType.RC, 16));
        }
        long scratch = f.alloc(64 * PAGE);
        AtomicBoolean stop = new AtomicBoolean();
        ExecutorService pool = Executors.newFixedThreadPool(PAIRS + 2);
        try {
            List<Future<?>> workers = new ArrayList<>();
            for (int i = 0; i < PAIRS; i++) {
                int n = i;
                workers.add(pool.submit(() -> {
                    QueuePair[] p = pairs.get(n);
                    CompletionQueue cq = cqs.get(n);
                    long mine = buf + n * 2 * PAGE;
                    for (int r = 0; r < ROUNDS; r++) {
                        p[1].postRecv(RecvWr.of(r, new Sge(mine + PAGE, 8, mr.lkey())));
                        p[0].postSend(new SendWr.AtomicFetchAndAdd(r, List.of(new Sge(mine + 8, 8, mr.lkey())), SIGNALED,
                                mine, mr.rkey(), 1));
                        p[0].postSend(new SendWr.Send(r, List.of(new Sge(mine, 8, mr.lkey())), SIGNALED, null));
                        List<WorkCompletion> got = new ArrayList<>();
                        while (got.size() < 3) {
                            got.addAll(cq.poll(4));
                        }
                        for (WorkCompletion w : got) {
                            assertTrue(w.isSuccess(), w.toString());
                            assertEquals(r, w.wrId());
                        }
                    }
                    return null;
                }));
            }
            Future<?> registrar = pool.submit(() -> {
                int cycles = 0;
                while (!stop.get()) {
                    MemoryRegion m = pd.regMr(scratch + (cycles % 32) * PAGE, 4 * PAGE,
                            (cycles & 1) == 0 ? Access.LOCAL_WRITE : Access.LOCAL_WRITE | Access.ON_DEMAND);
                    MemoryWindow w = pd.allocMw(MwType.TYPE_2);
                    w.destroy();
                    m.destroy();
                    cycles++;
                }
                return cycles;
            });
            Future<?> lister = pool.submit(() -> {
                int lists = 0;
                while (!stop.get()) {
                    assertFalse(ctx.resources().isEmpty());
                    lists++;
                }
                return lists;
            });
            for (Future<?> w : workers) {
                w.get();
            }
            stop.set(true);
            assertTrue((Integer) registrar.get() > 0);
            assertTrue((Integer) lister.get() > 0);
        } finally {
            pool.shutdownNow();
        }
        for (int i = 0; i < PAIRS; i++) {
            long counter = MemorySegment.ofArray(f.read(buf + i * 2 * PAGE, 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
            assertEquals(ROUNDS, counter, "every fetch-and-add landed once");
        }
        assertEquals(1 + 1 + PAIRS * 3, f.device().objectCount(), "pd, mr, the CQs and QPs; the registrar left nothing");
    }
}
