package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.DaxStore;
import dev.dmaplane.fs.impl.FileStore;
import dev.dmaplane.fs.impl.PageCacheStore;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.TreeMap;

/**
 * A mounted in-memory file system ({@code struct super_block}). Without DAX, file data lives in a page cache of
 * host frames over a simulated disk; mounted with {@code dax}, file blocks are host frames mapped straight into
 * address spaces, as on persistent memory. Names form a flat namespace of absolute paths: directories are implied
 * by the paths and not created. Thread-safe.
 */
public final class MemFs implements AutoCloseable {
    /** {@code PATH_MAX}. */
    public static final int PATH_MAX = 4096;
    /** {@code NAME_MAX}: the longest path component. */
    public static final int NAME_MAX = 255;

    private final HostMemory mem;
    private final Tracer tracer;
    private final String name;
    private final boolean dax;
    /** The namespace; guarded by {@code this}. */
    private final TreeMap<String, Inode> names = new TreeMap<>();
    /** Inodes not yet evicted, linked or not; guarded by {@code this}. */
    private final Set<Inode> live = Collections.newSetFromMap(new IdentityHashMap<>());
    private long nextIno = 1;
    private boolean closed;

    /**
     * Mounts an empty file system.
     *
     * @param name the device name events are traced under
     * @param dax  mount with {@code -o dax}: no page cache, file blocks are host frames
     */
    public MemFs(HostMemory mem, Tracer tracer, String name, boolean dax) {
        this.mem = ErrnoException.requireNonNull(mem, "mem");
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "a file system needs a name, not '" + name + "'");
        }
        this.name = name;
        this.dax = dax;
    }

    public String name() {
        return name;
    }

    /** Whether the file system is mounted with DAX. */
    public boolean isDax() {
        return dax;
    }

    public HostMemory memory() {
        return mem;
    }

    /**
     * Creates an empty file ({@code open(O_CREAT|O_EXCL)}).
     *
     * @throws ErrnoException {@code EINVAL} for a malformed path, {@code EEXIST} if the name is taken,
     *                        {@code ENODEV} after unmount
     */
    public synchronized Inode create(String path) {
        checkPath(path);
        checkMounted();
        if (names.containsKey(path)) {
            throw new ErrnoException(Errno.EEXIST, "file " + path + " already exists on " + name);
        }
        FileStore store = dax ? new DaxStore(mem) : new PageCacheStore(mem);
        Inode inode = new Inode(this, nextIno++, path, store);
        names.put(path, inode);
        live.add(inode);
        return inode;
    }

    /**
     * Looks a file up by path.
     *
     * @throws ErrnoException {@code ENOENT} if there is no such file, {@code EINVAL} for a malformed path
     */
    public synchronized Inode open(String path) {
        checkPath(path);
        checkMounted();
        Inode inode = names.get(path);
        if (inode == null) {
            throw new ErrnoException(Errno.ENOENT, "no file " + path + " on " + name);
        }
        return inode;
    }

    /** Whether a file of that path exists. */
    public synchronized boolean exists(String path) {
        return names.containsKey(path);
    }

    /**
     * Removes a name ({@code unlink(2)}). The inode is evicted now if no VMA maps it, else when the last mapping
     * goes.
     *
     * @throws ErrnoException {@code ENOENT} if there is no such file
     */
    public void unlink(String path) {
        Inode inode;
        synchronized (this) {
            checkPath(path);
            checkMounted();
            inode = names.remove(path);
            if (inode == null) {
                throw new ErrnoException(Errno.ENOENT, "no file " + path + " on " + name);
            }
        }
        inode.unlinked();
    }

    /** The paths of all files, sorted. */
    public synchronized List<String> list() {
        return List.copyOf(names.keySet());
    }

    /** The paths under directory {@code dir} (a path prefix ending in {@code /}), sorted. */
    public synchronized List<String> list(String dir) {
        String prefix = dir.endsWith("/") ? dir : dir + "/";
        return List.copyOf(names.subMap(prefix, prefix + Character.MAX_VALUE).keySet());
    }

    /** {@code sync(2)}: writes every dirty page back; returns pages written. */
    public long sync() {
        long n = 0;
        for (Inode i : liveInodes()) {
            if (!i.isEvicted()) {
                n += i.writeback();
            }
        }
        return n;
    }

    /** {@code echo 1 > /proc/sys/vm/drop_caches} for this file system; returns pages dropped. */
    public long dropCaches() {
        long n = 0;
        for (Inode i : liveInodes()) {
            if (!i.isEvicted()) {
                n += i.dropCache();
            }
        }
        return n;
    }

    /** Pages in the page caches of all files. */
    public long cachedPages() {
        long n = 0;
        for (Inode i : liveInodes()) {
            n += i.cachedPages();
        }
        return n;
    }

    /**
     * Unmounts: evicts every inode, freeing its pages and blocks (pinned frames live until unpinned).
     *
     * @throws ErrnoException {@code EBUSY} while some VMA still maps a file, as {@code umount(2)} fails while
     *                        files are in use; nothing is evicted then
     */
    @Override
    public void close() {
        List<Inode> inodes;
        synchronized (this) {
            if (closed) {
                return;
            }
            for (Inode i : live) {
                if (i.mapperCount() > 0) {
                    throw new ErrnoException(Errno.EBUSY, "cannot unmount " + name + ": " + i.path()
                            + " is still mapped");
                }
            }
            closed = true;
            names.clear();
            inodes = new ArrayList<>(live);
        }
        for (Inode i : inodes) {
            // a mapping that raced with the check above defers the eviction to its munmap
            i.unlinked();
        }
    }

    // used by Inode

    synchronized void forget(Inode inode) {
        live.remove(inode);
    }

    void traceInvalidate(long offset, long length, String detail) {
        tracer.emit(TraceKind.INVALIDATE, name, offset, length, detail);
    }

    private synchronized List<Inode> liveInodes() {
        return new ArrayList<>(live);
    }

    private void checkMounted() {
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, "file system " + name + " is unmounted");
        }
    }

    private static void checkPath(String path) {
        if (path == null || path.length() < 2 || path.charAt(0) != '/' || path.length() > PATH_MAX
                || path.endsWith("/") || path.indexOf('\0') >= 0) {
            throw new ErrnoException(Errno.EINVAL, "bad path '" + path + "': want an absolute file path");
        }
        for (String c : path.substring(1).split("/", -1)) {
            if (c.isEmpty() || c.equals(".") || c.equals("..") || c.length() > NAME_MAX) {
                throw new ErrnoException(Errno.EINVAL, "bad path '" + path + "': component '" + c + "'");
            }
        }
    }

    @Override
    public String toString() {
        return "memfs " + name + (dax ? " (dax)" : "");
    }
}
