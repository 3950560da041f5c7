package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaDebug;
import dev.dmaplane.dma.DmaDebugReport.Kind;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * dma-debug's bookkeeping of one device ({@code kernel/dma/debug.c}): the live entries, the recently unmapped
 * addresses, the mismatch reports of an unmap or sync, the pass-through ranges and peer windows a device access is
 * checked against, revoked mappings, and the leaks found at unbind.
 */
final class DebugEntries {
    private static final int RECENT_UNMAPS = 256;

    private final String deviceName;
    private final DmaDebug debug;
    /** Live mappings by the bus address of their first byte; a list because pass-through may map a buffer twice. */
    private final ConcurrentHashMap<Long, List<Mapping>> live = new ConcurrentHashMap<>();
    /** Pass-through ranges a device may touch, kept while dma-debug is on: segment start -> mapping. */
    final ConcurrentSkipListMap<Long, Range> ranges = new ConcurrentSkipListMap<>();
    private final Map<Long, Long> recentlyUnmapped = new LinkedHashMap<>(64, 0.75f, false) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Long, Long> eldest) {
            return size() > RECENT_UNMAPS;
        }
    };

    /** Live mappings whose device access was revoked ({@link #revoke}), with the reason; guarded by itself. */
    private final Map<Mapping, String> revoked = Collections.synchronizedMap(new IdentityHashMap<>());

    /** Live peer bus-address windows, revoked ones included until unmapped; few per device. */
    private final List<Mapping> peerWindows = new CopyOnWriteArrayList<>();
    /** Peer windows unmapped while dma-debug was on, newest last, for the report of a late access; guarded by itself. */
    private final ArrayDeque<Mapping> endedPeerWindows = new ArrayDeque<>();

    /** One device-visible range of a pass-through mapping, for dma-debug's access check. */
    record Range(long start, long length, DmaDirection direction, Mapping mapping) {
    }

    /** What dma-debug found about a peer access, and the window concerned (whose site the report names). */
    record PeerFinding(Kind kind, Mapping window, String what) {
    }

    DebugEntries(String deviceName, DmaDebug debug) {
        this.deviceName = deviceName;
        this.debug = debug;
    }

    /** Reports a misuse ({@code err_printk}) and returns the {@code EINVAL} the caller throws. */
    ErrnoException reportAndFail(Kind kind, long addr, long size, String message, Throwable site) {
        debug.report(kind, deviceName, addr, size, message, site);
        return new ErrnoException(Errno.EINVAL, deviceName + ": " + message);
    }

    /** Adds a new mapping ({@code add_dma_entry}). */
    void register(Mapping m) {
        live.compute(m.dmaAddr(), (k, v) -> {
            if (v == null) {
                return List.of(m);
            }
            List<Mapping> n = new ArrayList<>(v);
            n.add(m);
            return List.copyOf(n);
        });
        if (m.type() == Mapping.Type.PEER) {
            peerWindows.add(m);
        } else if (debug.enabled() && !m.translated()) {
            if (m.sg() != null) {
                for (DmaSegment s : m.sg().segments()) {
                    ranges.put(s.dmaAddress(), new Range(s.dmaAddress(), s.length(), m.direction(), m));
                }
            } else {
                ranges.put(m.dmaAddr(), new Range(m.dmaAddr(), m.size(), m.direction(), m));
            }
        }
    }

    /** Removes a mapping being undone ({@code check_unmap}'s removal), remembering its address while dma-debug is on. */
    void unregister(Mapping m) {
        live.computeIfPresent(m.dmaAddr(), (k, v) -> {
            List<Mapping> n = new ArrayList<>(v);
            n.remove(m);
            return n.isEmpty() ? null : List.copyOf(n);
        });
        if (!m.translated() && !ranges.isEmpty()) {
            dropRanges(m);
        }
        if (debug.enabled()) {
            synchronized (recentlyUnmapped) {
                recentlyUnmapped.put(m.dmaAddr(), m.size());
            }
        }
        if (m.type() == Mapping.Type.PEER) {
            peerWindows.remove(m);
            if (debug.enabled()) {
                synchronized (endedPeerWindows) {
                    if (endedPeerWindows.size() == RECENT_UNMAPS) {
                        endedPeerWindows.removeFirst();
                    }
                    endedPeerWindows.addLast(m);
                }
            }
        }
    }

    /** Closes the pass-through ranges of {@code m}: a device access there is no longer allowed. */
    void dropRanges(Mapping m) {
        if (m.sg() != null) {
            for (DmaSegment s : m.sg().segments()) {
                dropRange(s.dmaAddress(), m);
            }
        } else {
            dropRange(m.dmaAddr(), m);
        }
    }

    private void dropRange(long start, Mapping m) {
        Range r = ranges.get(start);
        if (r != null && r.mapping() == m) {
            ranges.remove(start, r);
        }
    }

    /**
     * The live mapping an unmap, sync or revoke names ({@code check_unmap}): each way it differs from how it was
     * made (unknown or already unmapped address, other call, size, direction) is reported and refused. A null
     * {@code direction} leaves the direction to the caller: a sync checks it by {@code check_sync}'s rules.
     */
    Mapping find(long dmaAddress, Mapping.Type type, String api, long size, DmaDirection direction, MappedSg sg) {
        if (direction != null) {
            requireKnownDirection(direction, api);
        }
        List<Mapping> l = live.get(dmaAddress);
        if (l == null || l.isEmpty()) {
            boolean twice;
            synchronized (recentlyUnmapped) {
                twice = recentlyUnmapped.containsKey(dmaAddress);
            }
            if (twice) {
                throw reportAndFail(Kind.DOUBLE_UNMAP, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                        + ", which was already unmapped", null);
            }
            throw reportAndFail(Kind.UNKNOWN_ADDRESS, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                    + ", which the device has not mapped", null);
        }
        Mapping other = null;
        for (Mapping m : l) {
            if (m.type() != type) {
                other = m;
                continue;
            }
            if (sg != null && !m.sg().equals(sg)) {
                other = m;
                continue;
            }
            if (m.size() != size) {
                throw reportAndFail(Kind.SIZE_MISMATCH, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                        + " with size " + size + ", but it was mapped with size " + m.size(), m.site());
            }
            if (direction != null && m.direction() != direction) {
                throw reportAndFail(Kind.DIRECTION_MISMATCH, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                        + " with direction " + direction + ", but it was mapped " + m.direction(), m.site());
            }
            return m;
        }
        Mapping o = other;
        throw reportAndFail(Kind.TYPE_MISMATCH, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                + ", which was made by " + (o == null ? "another call" : o.type().apiName()), o == null ? null : o.site());
    }

    /** Refuses a call without a direction ({@code check_unmap}'s {@code DMA_NONE} check). */
    void requireKnownDirection(DmaDirection direction, String api) {
        if (direction == null || direction == DmaDirection.NONE) {
            throw reportAndFail(Kind.BAD_DIRECTION, -1, 0, api + " with direction " + direction, null);
        }
    }

    /** The live mapping whose bus range covers {@code [addr, addr+len)}, or null. */
    Mapping containing(long addr, long len) {
        List<Mapping> exact = live.get(addr);
        if (exact != null) {
            for (Mapping m : exact) {
                if (len <= m.size()) {
                    return m;
                }
            }
        }
        for (List<Mapping> l : live.values()) {
            for (Mapping m : l) {
                if (covers(m, addr, len)) {
                    return m;
                }
            }
        }
        return null;
    }

    int liveCount() {
        int n = 0;
        for (List<Mapping> l : live.values()) {
            n += l.size();
        }
        return n;
    }

    /** Every live mapping, for the leak check at unbind. */
    List<Mapping> all() {
        List<Mapping> all = new ArrayList<>();
        for (List<Mapping> l : live.values()) {
            all.addAll(l);
        }
        return all;
    }

    /** Reports a mapping the driver still held when it was released ({@code dma_debug_device_change}). */
    /**
     * {@code check_sg_segment}: a mapped segment longer than {@code maxSegment}, or crossing the boundary of
     * {@code boundaryMask}, is reported (the mapping stands: the driver built the list wrong, or set its limits late).
     */
    void checkSgSegment(DmaSegment seg, long maxSegment, long boundaryMask, Throwable site) {
        if (seg.length() > maxSegment) {
            debug.report(Kind.SEGMENT_TOO_LONG, deviceName, seg.dmaAddress(), seg.length(), "mapping sg segment"
                    + " longer than the device claims to support [len=" + seg.length() + "] [max=" + maxSegment + "]", site);
        }
        long end = seg.dmaAddress() + seg.length() - 1;
        if (((seg.dmaAddress() ^ end) & ~boundaryMask) != 0) {
            debug.report(Kind.SEGMENT_BOUNDARY, deviceName, seg.dmaAddress(), seg.length(), String.format("mapping sg"
                    + " segment across boundary [start=0x%016x] [end=0x%016x] [boundary=0x%016x]", seg.dmaAddress(), end,
                    boundaryMask), site);
        }
    }

    void reportLeak(Mapping m) {
        debug.report(Kind.LEAK_AT_UNBIND, deviceName, m.dmaAddr(), m.size(), "driver has pending DMA allocations while released from device: "
                + m.type().apiName() + " of " + m.size() + " bytes at 0x" + Long.toHexString(m.dmaAddr()) + " (" + m.direction() + ")", m.site());
    }

    /** Marks {@code m} revoked for {@code why}; refuses a second revoke. */
    void revoke(Mapping m, String why) {
        if (revoked.putIfAbsent(m, why) != null) {
            throw new ErrnoException(Errno.EINVAL, deviceName + ": " + m.type().apiName() + " mapping at 0x"
                    + Long.toHexString(m.dmaAddr()) + " was already revoked (" + revoked.get(m) + ")");
        }
    }

    /** Forgets that {@code m} was revoked; returns whether it was. */
    boolean forgetRevoked(Mapping m) {
        return revoked.remove(m) != null;
    }

    /** The revoked mapping covering {@code [addr, addr+len)} and why it was revoked, or null. */
    Map.Entry<Mapping, String> revokedAt(long addr, long len) {
        synchronized (revoked) {
            for (Map.Entry<Mapping, String> e : revoked.entrySet()) {
                if (covers(e.getKey(), addr, len) || covers(e.getKey(), addr, 1)) {
                    return Map.entry(e.getKey(), e.getValue());
                }
            }
        }
        return null;
    }

    /**
     * dma-debug's verdict on a request the fabric routes to a peer at {@code [addr, addr+len)}: null when the device
     * may make it (a live window it was handed covers it and permits it, or no window it was ever handed touches it),
     * else the finding and the window concerned.
     */
    PeerFinding checkPeerAccess(long addr, long len, boolean write) {
        if (peerWindows.isEmpty() && endedPeerWindows.isEmpty()) {
            return null;
        }
        Mapping readOnly = null;
        Mapping partial = null;
        for (Mapping m : peerWindows) {
            if (!overlaps(m, addr, len) || revoked.containsKey(m)) {
                continue;
            }
            if (!covers(m, addr, len)) {
                partial = m;
            } else if (write && m.direction() == DmaDirection.TO_DEVICE) {
                readOnly = m;
            } else {
                return null;
            }
        }
        for (Mapping m : peerWindows) {
            String why = revoked.get(m);
            if (why != null && overlaps(m, addr, len)) {
                return new PeerFinding(Kind.ACCESS_REVOKED, m, "a peer bus-address window whose access was revoked: " + why);
            }
        }
        if (readOnly != null) {
            return new PeerFinding(Kind.ACCESS_READ_ONLY, readOnly, "a peer bus-address window mapped TO_DEVICE");
        }
        if (partial != null) {
            return new PeerFinding(Kind.ACCESS_UNMAPPED, partial, "beyond the end of the peer bus-address window at 0x"
                    + Long.toHexString(partial.dmaAddr()) + "+" + partial.size());
        }
        synchronized (endedPeerWindows) {
            for (Iterator<Mapping> it = endedPeerWindows.descendingIterator(); it.hasNext(); ) {
                Mapping m = it.next();
                if (overlaps(m, addr, len)) {
                    return new PeerFinding(Kind.ACCESS_UNMAPPED, m, "a peer bus-address window that was unmapped");
                }
            }
        }
        return null;
    }

    private static boolean covers(Mapping m, long addr, long len) {
        if (m.sg() != null) {
            for (DmaSegment s : m.sg().segments()) {
                if (addr >= s.dmaAddress() && addr + len <= s.dmaAddress() + s.length()) {
                    return true;
                }
            }
            return false;
        }
        return addr >= m.dmaAddr() && addr + len <= m.dmaAddr() + m.size();
    }

    private static boolean overlaps(Mapping m, long addr, long len) {
        return addr < m.dmaAddr() + m.size() && m.dmaAddr() < addr + len;
    }
}
