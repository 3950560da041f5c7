package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Gid;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The in-process Ethernet/UDP network joining the HCAs of one driver instance: each port attaches with the GIDs of
 * its netdev (IPv4-mapped and IPv6 addresses). Lossless and in order per sender; a packet to an address nobody
 * owns is dropped, as a switch would after the neighbour went away.
 */
final class Fabric {
    private final Map<Gid, Engine> ports = new ConcurrentHashMap<>();
    final AtomicLong dropped = new AtomicLong();
    /** Loss injection for tests: a packet this accepts is dropped (null: none is). */
    volatile java.util.function.Predicate<Packet> loss;

    void attach(Gid gid, Engine engine) {
        ports.put(gid, engine);
    }

    void detach(Engine engine) {
        ports.values().removeIf(e -> e == engine);
    }

    void send(Packet p) {
        var l = loss;
        if (l != null && l.test(p)) {
            dropped.incrementAndGet();
            return;
        }
        Engine dst = ports.get(p.dgid());
        if (dst == null || !dst.receive(p)) {
            dropped.incrementAndGet();
        }
    }
}
