package dev.dmaplane.driver.softroce;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.SequencedMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The port's hardware counters ({@code rxe_hw_counters.c}, shown by {@code rdma statistic}) and the engine's own:
 * written by the thread running the {@link Engine} (release stores, no fence), except {@link #burstsStored}, read by
 * anyone.
 */
final class Counters {
    final AtomicLong pktsSent = new AtomicLong();
    final AtomicLong pktsRecv = new AtomicLong();
    volatile long retries;
    /** Times a QP's transport timer expired with requests unacknowledged (a retry or RETRY_EXC_ERR followed). */
    volatile long timeouts;
    /** Retransmissions that resumed inside a message (at the PSN a NAK or a partial ACK gave). */
    volatile long resentFromMiddle;
    volatile long rnrNaksSent;
    /** Requests the responder saw again ({@code duplicate_request}), and sequence NAKs it sent ({@code out_of_seq_request}). */
    volatile long duplicates;
    volatile long outOfSeqNaksSent;
    /** NAKs the requester received: PSN sequence error and RNR ({@code rcvd_seq_err}, {@code rcvd_rnr_err}). */
    volatile long seqNaksRcvd;
    volatile long rnrNaksRcvd;
    /** Requests that ran out of transport and RNR retries. */
    volatile long retryExceeded;
    volatile long rnrRetryExceeded;
    /** Passes run by the worker thread, and by other threads (doorbells and deliveries that found the engine idle). */
    volatile long workerPasses;
    volatile long inlinePasses;
    /** Bursts received and stored because the engine was busy (store-and-forward), and delivered cut-through. */
    final AtomicLong burstsStored = new AtomicLong(); // by senders
    volatile long burstsCutThrough;
    /** Trains of single-packet WRITE messages the requester sent ({@link Packet.Payload.Messages}). */
    volatile long trainsSent;
    /** Packets dropped at reception, by reason ({@link WireCodec.Drop}): written by any receiving thread. */
    final AtomicLongArray drops = new AtomicLongArray(WireCodec.Drop.values().length);
    /** Times the carrier went away ({@code link_downed}). */
    volatile long linkDowned;

    /** The counters as rxe names them ({@code rxe_counter_name}), then the engine's own, prefixed {@code dmaplane_}. */
    SequencedMap<String, Long> values() {
        var m = new LinkedHashMap<String, Long>();
        m.put("sent_pkts", pktsSent.get());
        m.put("rcvd_pkts", pktsRecv.get());
        m.put("duplicate_request", duplicates);
        m.put("out_of_seq_request", outOfSeqNaksSent);
        m.put("rcvd_rnr_err", rnrNaksRcvd);
        m.put("send_rnr_err", rnrNaksSent);
        m.put("rcvd_seq_err", seqNaksRcvd);
        m.put("retry_exceeded_err", retryExceeded);
        m.put("retry_rnr_exceeded_err", rnrRetryExceeded);
        m.put("completer_retry_err", retries);
        m.put("link_downed", linkDowned);
        m.put("dmaplane_resent_from_middle", resentFromMiddle);
        m.put("dmaplane_transport_timeouts", timeouts);
        m.put("dmaplane_bursts_cut_through", burstsCutThrough);
        m.put("dmaplane_bursts_stored", burstsStored.get());
        m.put("dmaplane_write_trains", trainsSent);
        m.put("dmaplane_passes_inline", inlinePasses);
        m.put("dmaplane_passes_worker", workerPasses);
        for (WireCodec.Drop d : WireCodec.Drop.values()) {
            m.put("dmaplane_drop_" + d.name().toLowerCase(Locale.ROOT), drops.get(d.ordinal()));
        }
        return m;
    }
}
