package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.AccelLimits;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Collection;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The GEM handles of one context ({@code drm_file.object_idr}) and what they charge against the context's limits.
 * The numbers are the {@code UContext}'s handles, mirrored here so that a lookup answers {@code ENOENT} as
 * {@code drm_gem_object_lookup} does. Changed under the device's Ttm lock; read without it.
 */
final class GemHandles {
    private final String owner;
    private final AccelLimits limits;
    private final Map<Integer, BoImpl> table = new ConcurrentHashMap<>();
    /** Bytes and handles charged; guarded by the Ttm lock. */
    private long bytes;
    private int count;
    private int serial;

    GemHandles(String owner, AccelLimits limits) {
        this.owner = owner;
        this.limits = limits;
    }

    /** EAGAIN when {@code size} more bytes or one more handle would pass the context's limits. */
    void checkCharge(long size) {
        if (count >= limits.maxHandles() || size > limits.maxBytes() - bytes) {
            throw new ErrnoException(Errno.EAGAIN, String.format("%s: a %d-byte object over the limits"
                    + " (%d of %d handles, %d of %d bytes)", owner, size, count, limits.maxHandles(), bytes,
                    limits.maxBytes()));
        }
    }

    /** Charges one handle of {@code size} bytes, before the handle exists (its release uncharges it). */
    void charge(long size) {
        bytes += size;
        count++;
    }

    /** Enters a handle already charged. */
    void put(int handle, BoImpl bo) {
        table.put(handle, bo);
    }

    /** The handle went: out of the table if it still names {@code bo}, its charge of {@code bo.size} given back. */
    void release(int handle, BoImpl bo) {
        table.remove(handle, bo);
        bytes -= bo.size;
        count--;
    }

    boolean contains(int handle) {
        return table.containsKey(handle);
    }

    /** The object of {@code handle}; ENOENT naming the handle when there is none. */
    BoImpl lookup(int handle) {
        BoImpl bo = table.get(handle);
        if (bo == null) {
            throw new ErrnoException(Errno.ENOENT, "no buffer object with handle " + handle + " in " + owner);
        }
        return bo;
    }

    /** A handle of {@code bo} here, or null. */
    Integer handleOf(BoImpl bo) {
        for (Map.Entry<Integer, BoImpl> e : table.entrySet()) {
            if (e.getValue() == bo) {
                return e.getKey();
            }
        }
        return null;
    }

    /** The handle of the object importing {@code dmabuf} here, or null. */
    Integer importing(DmaBuf dmabuf) {
        for (Map.Entry<Integer, BoImpl> e : table.entrySet()) {
            if (e.getValue().backing instanceof ImportedPages ip && ip.dmabuf() == dmabuf) {
                return e.getKey();
            }
        }
        return null;
    }

    /** The name of the context's next object: {@code "<owner> bo#<n>"}. */
    String nextName() {
        return owner + " bo#" + ++serial;
    }

    /** The objects behind the handles, a live view. */
    Collection<BoImpl> objects() {
        return table.values();
    }

    int size() {
        return table.size();
    }
}
