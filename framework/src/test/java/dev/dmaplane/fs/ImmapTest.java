package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.FileMapper;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A file's {@code i_mmap} as {@code vma_link_file}, {@code unlink_file_vma} and {@code unmap_mapping_range} use it, and
 * the end of an unlinked file ({@code iput_final} once the last mapping is gone): eviction is decided exactly once,
 * and no mapping is added after it.
 */
class ImmapTest {
    private static FileMapper mapper(List<String> unmapped, String name) {
        return (first, end, evenCows) -> unmapped.add(name + " [" + first + "," + end + ")" + (evenCows ? " cow" : ""));
    }

    @Test
    void anUnlinkedFileIsEvictedOnceItsLastMappingGoes() {
        Immap immap = new Immap("inode 7 (/f)");
        List<String> unmapped = new ArrayList<>();
        FileMapper a = mapper(unmapped, "a");
        FileMapper b = mapper(unmapped, "b");
        assertFalse(immap.replace(List.of(), List.of(a, b), add -> { }));
        assertFalse(immap.unlink(), "still mapped twice");
        assertFalse(immap.isLinked());
        assertFalse(immap.replace(List.of(a), List.of(), add -> { }), "b still maps it");
        immap.unmap(0, 4, true);
        assertEquals(List.of("b [0,4) cow"), unmapped);
        assertTrue(immap.replace(List.of(b), List.of(), add -> { }), "the last mapping went: evict");
        assertEquals(0, immap.count());
        assertFalse(immap.replace(List.of(), List.of(), add -> { }), "decided once");
        assertFalse(immap.unlink(), "decided once");

        ErrnoException e = assertThrows(ErrnoException.class, () -> immap.replace(List.of(), List.of(a), add -> { }));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("inode 7 (/f)"), e.getMessage());
        assertEquals(0, immap.count());
    }

    @Test
    void anUnlinkedUnmappedFileIsEvictedAtOnceAndARefusedAddChangesNothing() {
        Immap linked = new Immap("inode 8 (/g)");
        FileMapper a = mapper(new ArrayList<>(), "a");
        FileMapper b = mapper(new ArrayList<>(), "b");
        assertFalse(linked.replace(List.of(), List.of(a), add -> { }));
        ErrnoException refused = new ErrnoException(Errno.EPERM, "sealed");
        assertSame(refused, assertThrows(ErrnoException.class,
                () -> linked.replace(List.of(a), List.of(b), add -> { throw refused; })));
        assertEquals(1, linked.count(), "a stays, b never came");
        linked.whileStable(mappers -> assertTrue(mappers.contains(a) && !mappers.contains(b)));
        assertTrue(linked.isLinked());

        Immap unmapped = new Immap("inode 9 (/h)");
        assertTrue(unmapped.unlink(), "nothing maps it: evict now");
    }
}
