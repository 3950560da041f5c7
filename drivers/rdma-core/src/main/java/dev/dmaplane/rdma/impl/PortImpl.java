package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.GidType;

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * One port's GID table, kept as {@code drivers/infiniband/core/roce_gid_mgmt.c} and {@code cache.c} keep it for a
 * RoCEv2 port: index 0 holds the default GID (link-local, from the MAC), every IP address of the netdev holds one
 * more (IPv4 as {@code ::ffff:a.b.c.d}). An entry keeps its index while its address stays; a new address takes
 * the first free index; a duplicate GID is not added twice; beyond the table size addresses are left out.
 */
final class PortImpl {
    final int num;
    private final GidEntry[] table;

    PortImpl(int num, int size, NetdevInfo netdev) {
        this.num = num;
        this.table = new GidEntry[size];
        refresh(netdev);
    }

    /** Rebuilds from the netdev; whether anything changed. */
    synchronized boolean refresh(NetdevInfo nd) {
        Set<Gid> wanted = new LinkedHashSet<>();
        Gid def = Gid.linkLocal(nd.mac());
        wanted.add(def);
        for (InetAddress a : nd.addresses()) {
            wanted.add(Gid.of(a));
        }
        boolean changed = false;
        if (table[0] == null || !table[0].gid().equals(def) || !table[0].netdev().equals(nd.name())) {
            table[0] = new GidEntry(0, def, GidType.ROCE_V2, num, nd.name());
            changed = true;
        }
        for (int i = 1; i < table.length; i++) {
            GidEntry e = table[i];
            if (e != null && (!wanted.contains(e.gid()) || e.gid().equals(def) || !e.netdev().equals(nd.name()))) {
                table[i] = null;
                changed = true;
            }
        }
        for (Gid g : wanted) {
            if (indexOf(g) >= 0) {
                continue;
            }
            for (int i = 1; i < table.length; i++) {
                if (table[i] == null) {
                    table[i] = new GidEntry(i, g, GidType.ROCE_V2, num, nd.name());
                    changed = true;
                    break;
                }
            }
        }
        return changed;
    }

    private int indexOf(Gid g) {
        for (int i = 0; i < table.length; i++) {
            if (table[i] != null && table[i].gid().equals(g)) {
                return i;
            }
        }
        return -1;
    }

    int size() {
        return table.length;
    }

    /** The entry at {@code index}, or null when empty. */
    synchronized GidEntry entry(int index) {
        return table[index];
    }

    synchronized List<GidEntry> entries() {
        List<GidEntry> out = new ArrayList<>();
        for (GidEntry e : table) {
            if (e != null) {
                out.add(e);
            }
        }
        return out;
    }
}
