package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Gid;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;

/**
 * The in-process Ethernet/UDP network joining the HCAs of one driver instance: each port attaches with the GIDs of
 * its netdev (IPv4-mapped and IPv6 addresses). Lossless and in order per sender; a packet to an address nobody
 * owns is dropped, as a switch would after the neighbour went away. A burst goes to its receiver in one delivery
 * ({@link Engine#receive}), which handles it at once (cut-through) when it can, else stores it.
 */
final class Fabric implements Transport {
    private final Map<Gid, Engine> ports = new ConcurrentHashMap<>();
    final AtomicLong dropped = new AtomicLong();
    /**
     * Loss injection for tests: a packet this accepts is dropped (null: none is). While it is set, senders hand
     * out single packets instead of trains, so that any one packet can be lost.
     */
    volatile Predicate<Packet> loss;
    /**
     * Reordering injection for tests: a packet this accepts changes places with the next one of its burst (null: the
     * fabric keeps the order). While it is set, senders hand out single packets, as with {@link #loss}.
     */
    volatile Predicate<Packet> swap;

    void attach(Gid gid, Engine engine) {
        ports.put(gid, engine);
    }

    void detach(Engine engine) {
        ports.values().removeIf(e -> e == engine);
    }

    @Override
    public boolean perPacket() {
        return loss != null || swap != null;
    }

    @Override
    public void dropped(int n) {
        dropped.addAndGet(n);
    }

    /** Sends a burst, in order: consecutive packets to one receiver are delivered together. */
    @Override
    public void send(List<Packet> burst) {
        int n = burst.size();
        int from = 0;
        var l = loss;
        if (l != null) {
            burst = burst.stream().filter(p -> {
                if (l.test(p)) {
                    dropped.incrementAndGet();
                    return false;
                }
                return true;
            }).toList();
            n = burst.size();
        }
        var s = swap;
        if (s != null && n > 1) {
            List<Packet> swapped = new ArrayList<>(burst);
            for (int i = 0; i + 1 < n; i++) {
                if (s.test(swapped.get(i))) {
                    Collections.swap(swapped, i, i + 1);
                    i++; // a packet moves one place at most
                }
            }
            burst = swapped;
        }
        while (from < n) {
            Gid dgid = burst.get(from).dgid();
            int to = from + 1;
            while (to < n && burst.get(to).dgid().equals(dgid)) {
                to++;
            }
            List<Packet> part = (from == 0 && to == n) ? burst : burst.subList(from, to);
            Engine dst = ports.get(dgid);
            if (dst == null || !dst.receive(part)) {
                dropped.addAndGet(part.size());
            }
            from = to;
        }
    }
}
