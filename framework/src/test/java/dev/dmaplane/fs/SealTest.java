package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.*;

/**
 * File seals as memfd_create(2) and fcntl(2) F_ADD_SEALS/F_GET_SEALS describe them (mm/memfd.c
 * memfd_add_seals, shmem's checks in mm/shmem.c): shrink/grow/write seals refuse with EPERM, F_SEAL_SEAL
 * freezes the set, unknown bits are EINVAL, and only shmem-like (page-cache) files take seals.
 */
class SealTest {
    private final HostMemory mem = new HostMemory(16L << 20);
    private final Tracer tracer = new Tracer();
    private final MemFs fs = new MemFs(mem, tracer, "shm", false);

    @AfterEach
    void tearDown() {
        mem.close();
    }

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    @Test
    void sealsRefuseWhatTheyForbidAndNothingElse() {
        Inode f = fs.create("/memfd:buf");
        f.write(0, MemorySegment.ofArray(new byte[3 * 4096]));
        assertEquals(0, f.seals());
        f.addSeals(Inode.F_SEAL_SHRINK);
        assertEquals(Errno.EPERM, errno(() -> f.truncate(4096)));
        assertEquals(3 * 4096, f.size(), "a refused shrink changes nothing");
        f.truncate(4 * 4096);
        f.write(4 * 4096, MemorySegment.ofArray(new byte[]{1}));
        f.punchHole(0, 4096);

        f.addSeals(Inode.F_SEAL_GROW);
        assertEquals(Errno.EPERM, errno(() -> f.truncate(8 * 4096)));
        assertEquals(Errno.EPERM, errno(() -> f.write(f.size(), MemorySegment.ofArray(new byte[]{1}))));
        assertEquals(1, f.write(0, MemorySegment.ofArray(new byte[]{7})), "writing inside the file is still allowed");

        f.addSeals(Inode.F_SEAL_WRITE);
        assertEquals(Errno.EPERM, errno(() -> f.write(0, MemorySegment.ofArray(new byte[]{1}))));
        assertEquals(Errno.EPERM, errno(() -> f.punchHole(0, 4096)));
        assertEquals(Inode.F_SEAL_SHRINK | Inode.F_SEAL_GROW | Inode.F_SEAL_WRITE, f.seals());
        byte[] one = new byte[1];
        f.read(0, MemorySegment.ofArray(one));
        assertEquals(7, one[0]);
    }

    @Test
    void sealSealFreezesTheSetAndBadBitsAreRefused() {
        Inode f = fs.create("/memfd:x");
        assertEquals(Errno.EINVAL, errno(() -> f.addSeals(0x40)));
        f.addSeals(Inode.F_SEAL_SEAL);
        assertEquals(Errno.EPERM, errno(() -> f.addSeals(Inode.F_SEAL_SHRINK)));
        assertEquals(Inode.F_SEAL_SEAL, f.seals());

        MemFs dax = new MemFs(mem, tracer, "pmem", true);
        Inode d = dax.create("/f");
        assertEquals(Errno.EINVAL, errno(d::seals));
        assertEquals(Errno.EINVAL, errno(() -> d.addSeals(Inode.F_SEAL_SHRINK)));
    }
}
