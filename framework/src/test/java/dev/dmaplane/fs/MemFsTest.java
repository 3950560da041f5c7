package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The namespace and life cycle of {@link MemFs}: {@code open(O_CREAT|O_EXCL)} gives {@code EEXIST}, a missing
 * name {@code ENOENT} ({@code fs/namei.c}); an unlinked inode lives while mapped and is evicted after
 * ({@code iput_final}/{@code evict} in {@code fs/inode.c}); {@code umount} fails with {@code EBUSY} while files are
 * in use ({@code fs/namespace.c}).
 */
class MemFsTest {
    private final HostMemory mem = new HostMemory(64L << 20);
    private final Tracer tracer = new Tracer();
    private final MemFs fs = new MemFs(mem, tracer, "memfs0", false);

    @AfterEach
    void tearDown() {
        mem.close();
    }

    private static MemorySegment bytes(String s) {
        return MemorySegment.ofArray(s.getBytes());
    }

    @Test
    void createOpenListUnlink() {
        Inode a = fs.create("/a");
        Inode b = fs.create("/dir/b");
        fs.create("/dir/c");
        assertSame(a, fs.open("/a"));
        assertSame(b, fs.open("/dir/b"));
        assertEquals(List.of("/a", "/dir/b", "/dir/c"), fs.list());
        assertEquals(List.of("/dir/b", "/dir/c"), fs.list("/dir"));
        assertTrue(a.ino() != b.ino());

        fs.unlink("/dir/b");
        assertFalse(fs.exists("/dir/b"));
        assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> fs.open("/dir/b")).errno());
        assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> fs.unlink("/dir/b")).errno());
    }

    @Test
    void duplicateAndMalformedNamesAreRefused() {
        fs.create("/x");
        ErrnoException dup = assertThrows(ErrnoException.class, () -> fs.create("/x"));
        assertEquals(Errno.EEXIST, dup.errno());
        assertTrue(dup.getMessage().contains("/x"));
        for (String bad : new String[]{"x", "/", "/a//b", "/a/", "/a/../b", "", "/" + "n".repeat(256)}) {
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> fs.create(bad)).errno(), bad);
        }
        assertEquals(List.of("/x"), fs.list());
    }

    @Test
    void unlinkedUnmappedInodeIsEvictedAndItsFramesFreed() {
        long before = mem.allocatedFrames();
        Inode f = fs.create("/f");
        f.write(0, bytes("x".repeat(3 * 4096)));
        assertEquals(3, f.cachedPages());
        assertEquals(before + 3, mem.allocatedFrames());
        fs.unlink("/f");
        assertTrue(f.isEvicted());
        assertEquals(before, mem.allocatedFrames());
        assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class,
                () -> f.read(0, MemorySegment.ofArray(new byte[1]))).errno());
    }

    @Test
    void unlinkedInodeLivesWhileMappedAndIsEvictedAtMunmap() {
        long before = mem.allocatedFrames();
        Inode f = fs.create("/f");
        f.write(0, bytes("hello"));
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 4096, Prot.PROT_READ, true);
            fs.unlink("/f");
            assertFalse(f.isLinked());
            assertFalse(f.isEvicted());
            MemorySegment out = Arena.ofAuto().allocate(5);
            as.read(va, out);
            assertEquals("hello", new String(out.toArray(ValueLayout.JAVA_BYTE)));
            as.munmap(va, 4096);
            assertTrue(f.isEvicted());
        }
        assertEquals(before, mem.allocatedFrames());
    }

    @Test
    void unmountIsRefusedWhileMappedAndFreesEverythingAfter() {
        long before = mem.allocatedFrames();
        Inode f = fs.create("/f");
        f.write(0, bytes("data"));
        AddressSpace as = new AddressSpace(mem, tracer, "p");
        as.mmapFile(f, 0, 4096, Prot.PROT_READ, false);
        ErrnoException busy = assertThrows(ErrnoException.class, fs::close);
        assertEquals(Errno.EBUSY, busy.errno());
        assertTrue(busy.getMessage().contains("/f"));
        assertTrue(fs.exists("/f"));
        as.close();
        fs.close();
        assertTrue(f.isEvicted());
        assertEquals(before, mem.allocatedFrames());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> fs.create("/g")).errno());
    }
}
