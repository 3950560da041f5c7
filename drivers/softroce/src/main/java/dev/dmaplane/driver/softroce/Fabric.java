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

    void attach(Gid gid, Engine engine) {
        ports.put(gid, engine);
    }

    void detach(Engine engine) {
        ports.values().removeIf(e -> e == engine);
    }

    void send(Packet p) {
        Engine dst = ports.get(p.dgid());
        if (dst == null || !dst.receive(p)) {
            dropped.incrementAndGet();
        }
    }
}
