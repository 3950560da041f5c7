package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The TX thread's selector lets go of a closed stream at once, however busy the thread is. A channel registered with
 * a selector keeps its socket open until that selector deregistered the cancelled key, which only a selection does
 * (the JDK's {@code SelectorImpl}); a stream that once waited for write space ({@code sk_write_space},
 * {@code siw_qp_llp_write_space}) stays registered for the connection's life, so a device whose TX thread always had
 * another QP to serve kept every such closed connection's socket. Linux siw's socket goes with
 * {@code siw_socket_disassoc} and {@code sock_release} when the connection ends ({@code siw_cm.c}).
 */
@Timeout(60)
class SiwTxRegistrationTest {
    private static final int MIB = 1 << 20;
    private static final int WRITES = 16;

    private final SiwHosts h = new SiwHosts(63, 64);

    @AfterEach
    void close() {
        h.da.providers.get("siw0").tx.beforeTurn = null;
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private static void await(CountDownLatch l) {
        try {
            if (!l.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError("not released within " + SiwHosts.WAIT);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** {@code n} one-byte WRITEs, unsignaled, from a's buffer to b's. */
    private List<SendWr> writes(int n) {
        List<SendWr> w = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            w.add(new SendWr.RdmaWrite(1000 + i, List.of(h.a.sge(i, 1)), 0, h.b.buf + i, h.b.mr.rkey()));
        }
        return w;
    }

    /**
     * A stream to a raw peer stalls (its QP registered for write space) and recovers; then, while the TX thread is
     * busy with another QP's turns (more than one burst of WRITEs, {@code SQ_USER_MAXBURST}), the stalled QP goes to
     * ERR, which closes its stream: its registration is gone before the thread's next turn.
     */
    @Test
    void aClosedStreamLeavesTheTxSelectorBeforeTheNextTurn() throws Exception {
        SiwProvider dev = h.da.providers.get("siw0");
        dev.mpa(Mpa.REVISION_1, false); // the raw peer speaks revision 1
        QueuePair qa = h.a.rc();
        Thread reader;
        try (ServerSocket server = new ServerSocket()) {
            server.setReceiveBufferSize(64 << 10);
            server.bind(new InetSocketAddress(h.b.address, 0), 1);
            h.a.cm.connect(qa.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(),
                    new IwConnParam(null, 1, 1), h.a.events::add);
            Socket s = server.accept();
            DataInputStream in = new DataInputStream(s.getInputStream());
            in.readFully(new byte[Mpa.RR_HDR]);
            s.getOutputStream().write(Mpa.frame(true, false, Mpa.REVISION_1, null, new byte[0]));
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);

            List<SendWr> big = new ArrayList<>();
            for (int i = 0; i < WRITES; i++) {
                big.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(0, MIB)), SIGNALED, (long) i * MIB, 0x1234));
            }
            qa.postSend(big);
            eventually(() -> dev.tx.registrations() == 1, SiwHosts.WAIT, "the stalled stream waits for write space");
            reader = Thread.ofPlatform().name("raw-reader").start(() -> drain(s));
            List<WorkCompletion> done = SiwHosts.poll(h.a.cq, WRITES);
            assertTrue(done.stream().allMatch(WorkCompletion::isSuccess), done.toString());
            assertEquals(1, dev.tx.registrations(), "registered for the connection's life");
        }

        QueuePair[] p = h.pair();
        CountDownLatch firstTurn = new CountDownLatch(1);
        CountDownLatch releaseFirst = new CountDownLatch(1);
        dev.tx.beforeTurn = () -> {
            firstTurn.countDown();
            await(releaseFirst);
        };
        p[0].postSend(writes(150)); // the poster sends a burst and hands the rest to the TX thread
        await(firstTurn);

        qa.modify(QpAttr.builder().state(QpState.ERR).build()); // closes the stream
        p[0].postSend(writes(100)); // with what is left, more than a burst: the TX thread has another turn waiting
        CountDownLatch nextTurn = new CountDownLatch(1);
        CountDownLatch releaseNext = new CountDownLatch(1);
        dev.tx.beforeTurn = () -> {
            nextTurn.countDown();
            await(releaseNext);
        };
        releaseFirst.countDown();
        await(nextTurn);
        int left = dev.tx.registrations();
        dev.tx.beforeTurn = null;
        releaseNext.countDown();
        assertEquals(0, left, "the closed stream's registration is gone before the TX thread's next turn");
        assertTrue(reader.join(SiwHosts.WAIT), "the raw peer saw the stream end");
    }

    /** Reads the stream until siw closes it, then closes the socket. */
    private static void drain(Socket s) {
        try (s; InputStream in = s.getInputStream()) {
            byte[] b = new byte[1 << 16];
            while (in.read(b) >= 0) {
                // discarded: only the stream's flow matters here
            }
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }
}
