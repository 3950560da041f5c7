package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.fs.PageCopy;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.vfio.nvme.NvmeCommand.NVM_READ;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A doorbell is a register store (NVM Express Base Specification 2.0, 3.1.4.25 SQyTDBL: the host writes the new tail;
 * QEMU's {@code nvme_process_db} records it and schedules the queue's bottom half): a doorbell write never waits for
 * a command the controller is running, and another queue's command runs and completes meanwhile, as each SQ has its
 * own engine ({@code nvme_process_sq}). A read of a marked LBA is held inside the namespace by a latch: the forced
 * interleaving.
 */
class NvmeDoorbellTest {
    private static final long HELD_LBA = 4242;
    private static final long WAIT_S = 10;
    /** Longer than the test waits for anything, so only the test ends the hold. */
    private static final long HOLD_S = 60;

    private final CountDownLatch entered = new CountDownLatch(1);
    private final CountDownLatch release = new CountDownLatch(1);
    private NvmeMachine m;

    @AfterEach
    void close() {
        release.countDown();
        if (m != null) {
            m.close();
        }
    }

    /** The media, with a read at {@link #HELD_LBA} held until the test releases it. */
    private Media holding(Media media) {
        return new Media() {
            @Override
            public long read(int nsid, long offset, long length, PageCopy to) {
                if (offset == HELD_LBA * 512) {
                    entered.countDown();
                    try {
                        if (!release.await(HOLD_S, TimeUnit.SECONDS)) {
                            throw new IllegalStateException("the test never released the held read");
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException("held read interrupted", e);
                    }
                }
                return media.read(nsid, offset, length, to);
            }

            @Override
            public long write(int nsid, long offset, long length, PageCopy from) {
                return media.write(nsid, offset, length, from);
            }

            @Override
            public void zero(int nsid, long offset, long length) {
                media.zero(nsid, offset, length);
            }

            @Override
            public void flush() {
                media.flush();
            }

            @Override
            public void close() {
                media.close();
            }
        };
    }

    @Test
    void aDoorbellDoesNotWaitForACommandInProgressAndAnotherQueueRunsMeanwhile() throws Exception {
        m = new NvmeMachine(this::holding);
        NvmeTestDriver.Bound d = m.bound();
        NvmeTestDriver.Queue other = d.queuePair(2, 8, 8);
        NvmeTestDriver.Buffer held = d.buffer(4096);
        NvmeTestDriver.Buffer free = d.buffer(4096);

        d.submit(d.io, NvmeCommand.readWrite(NVM_READ, 0x11, 1, HELD_LBA, 1, held.bus(), 0));
        assertTrue(entered.await(WAIT_S, TimeUnit.SECONDS), "the controller started the held read");

        AtomicReference<NvmeCompletion> done = new AtomicReference<>();
        Thread host = Thread.ofPlatform().name("doorbell-writer").start(() -> {
            d.submit(other, NvmeCommand.readWrite(NVM_READ, 0x22, 1, 7, 1, free.bus(), 0));
            done.set(d.reap(other));
        });
        host.join(Duration.ofSeconds(5));
        boolean finished = !host.isAlive();
        release.countDown();
        host.join(Duration.ofSeconds(WAIT_S));
        assertFalse(host.isAlive(), "the host thread ended once the held read was released");
        assertTrue(finished, "the doorbell write and SQ 2's command completed while SQ 1's command was held");
        assertEquals(0x22, done.get().cid());
        assertTrue(done.get().ok(), done.get().toString());

        NvmeCompletion first = d.reap(d.io);
        assertEquals(0x11, first.cid());
        assertTrue(first.ok(), first.toString());
    }
}
