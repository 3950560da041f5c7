package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A file's pages pinned for a device as {@code memfd_pin_folios} ({@code mm/gup.c}) pins them for udmabuf, and
 * released as {@code unpin_user_pages_dirty_lock} releases pages a device wrote
 * ({@code Documentation/core-api/pin_user_pages.rst}); and the exported {@code dev.dmaplane.fs} API holding only
 * what users of files call, the page-level operations of the mm layer ({@code filemap_fault},
 * {@code set_page_dirty_lock}, {@code i_mmap}) being internal.
 */
class PinPagesTest {
    private static final int PAGE = (int) HostMemory.PAGE_SIZE;
    private final HostMemory mem = new HostMemory(64L << 20);
    private final MemFs fs = new MemFs(mem, new Tracer(), "memfs0", false);

    @AfterEach
    void tearDown() {
        mem.close();
    }

    private static ErrnoException refused(Runnable r) {
        return assertThrows(ErrnoException.class, r::run);
    }

    @Test
    void pinnedPagesOutliveTruncateAndAreReleasedDirty() {
        Inode f = fs.create("/memfd");
        byte[] data = new byte[3 * PAGE];
        Arrays.fill(data, (byte) 7);
        f.write(0, MemorySegment.ofArray(data));
        f.writeback();

        long[] pfns = f.pinPages(1, 2);

        assertEquals(2, pfns.length);
        assertEquals(f.frameOf(1).orElseThrow(), pfns[0]);
        assertEquals(f.frameOf(2).orElseThrow(), pfns[1]);
        assertEquals(2, mem.pinsOutstanding());
        f.unpinPagesDirty(1, pfns);
        assertEquals(0, mem.pinsOutstanding());
        assertEquals(2, f.dirtyPages(), "a device may have written them: both are dirty again");

        long[] again = f.pinPages(0, 1);
        f.truncate(0);
        assertEquals(1, mem.pinnedFrames(), "the frame outlives the cache while pinned");
        f.unpinPagesDirty(0, again);
        assertEquals(0, mem.pinnedFrames());
        assertEquals(0, f.dirtyPages(), "a page the cache no longer holds is not dirtied");
    }

    @Test
    void badRangesPinNothing() {
        Inode f = fs.create("/memfd");
        f.truncate(2 * PAGE);

        assertEquals(Errno.EINVAL, refused(() -> f.pinPages(-1, 1)).errno());
        assertEquals(Errno.EINVAL, refused(() -> f.pinPages(0, 0)).errno());
        ErrnoException past = refused(() -> f.pinPages(1, 2));
        assertEquals(Errno.EFAULT, past.errno(), "page 2 lies past the end (SIGBUS)");
        assertTrue(past.getMessage().contains("page 2"), past.getMessage());
        assertEquals(0, mem.pinsOutstanding(), "the page pinned before the failure was unpinned");
    }

    @Test
    void theExportedApiHasNoMmOnlyOperations() {
        List<String> mmOnly = List.of("fault", "checkPagesInside", "setPageDirty", "addMapper", "removeMapper",
                "replaceMappers");
        for (Method m : Inode.class.getDeclaredMethods()) {
            if (Modifier.isPublic(m.getModifiers())) {
                assertFalse(mmOnly.contains(m.getName()), "Inode." + m.getName() + " is the mm layer's, not public API");
            }
        }
        assertThrows(ClassNotFoundException.class, () -> Class.forName("dev.dmaplane.fs.FileMapper"),
                "i_mmap entries are the mm layer's business");
    }
}
