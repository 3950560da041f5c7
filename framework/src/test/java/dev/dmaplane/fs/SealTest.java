package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
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

    /** A new file of two zeroed pages. */
    private Inode twoPages(String path) {
        Inode f = fs.create(path);
        f.write(0, MemorySegment.ofArray(new byte[2 * 4096]));
        return f;
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

    /**
     * fcntl(2): adding F_SEAL_WRITE fails with EBUSY while a writable shared mapping exists, and once it is set a
     * new shared writable mmap fails with EPERM; a read-only shared mapping made then cannot be mprotect'ed
     * writable (VM_MAYWRITE cleared by shmem's mmap: EACCES). Private mappings do not count.
     */
    @Test
    void writeSealNeedsNoSharedWritableMappingAndKeepsNewOnesReadOnly() {
        Inode f = twoPages("/memfd:w");
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long shared = as.mmapFile(f, 0, 2 * 4096, Prot.PROT_READ | Prot.PROT_WRITE, true);
            long priv = as.mmapFile(f, 0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, false);
            long readOnly = as.mmapFile(f, 0, 4096, Prot.PROT_READ, true);
            assertEquals(Errno.EBUSY, errno(() -> f.addSeals(Inode.F_SEAL_WRITE | Inode.F_SEAL_SHRINK)));
            assertEquals(0, f.seals(), "a refused F_ADD_SEALS adds none of its seals");
            as.munmap(shared, 2 * 4096);
            assertEquals(Errno.EBUSY, errno(() -> f.addSeals(Inode.F_SEAL_WRITE)),
                    "a read-only shared mapping made before the seal may still become writable");
            as.munmap(readOnly, 4096);
            f.addSeals(Inode.F_SEAL_WRITE); // only the private copy-on-write mapping is left
            as.write(priv, MemorySegment.ofArray(new byte[]{9}));
            byte[] b = new byte[1];
            f.read(0, MemorySegment.ofArray(b));
            assertEquals(0, b[0], "a private mapping writes its own copy");

            int before = as.vmas().size();
            assertEquals(Errno.EPERM, errno(() -> as.mmapFile(f, 0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, true)));
            assertEquals(before, as.vmas().size(), "nothing mapped");
            long ro = as.mmapFile(f, 0, 4096, Prot.PROT_READ, true);
            assertEquals(Errno.EACCES, errno(() -> as.mprotect(ro, 4096, Prot.PROT_READ | Prot.PROT_WRITE)));
            assertEquals(Prot.PROT_READ, as.findVma(ro).orElseThrow().prot(), "still read-only");
            as.read(ro, MemorySegment.ofArray(b));
            assertEquals(0, b[0]);
        }
    }

    /**
     * fcntl(2) F_SEAL_FUTURE_WRITE: write(2) and new writable shared mmaps fail with EPERM, while a writable shared
     * mapping made before the seal keeps writing the file (even after it is split by a partial munmap).
     */
    @Test
    void futureWriteSealKeepsExistingWritableMappings() {
        Inode f = twoPages("/memfd:fw");
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long w = as.mmapFile(f, 0, 2 * 4096, Prot.PROT_READ | Prot.PROT_WRITE, true);
            f.addSeals(Inode.F_SEAL_FUTURE_WRITE);
            assertEquals(Errno.EPERM, errno(() -> f.write(0, MemorySegment.ofArray(new byte[]{1}))));
            assertEquals(Errno.EPERM, errno(() -> as.mmapFile(f, 0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, true)));
            as.munmap(w + 4096, 4096); // the mapping is replaced by its left part: not a new mapping
            as.write(w, MemorySegment.ofArray(new byte[]{5}));
            byte[] b = new byte[1];
            f.read(0, MemorySegment.ofArray(b));
            assertEquals(5, b[0], "the mapping made before the seal still writes the file");
            long ro = as.mmapFile(f, 0, 4096, Prot.PROT_READ, true);
            assertEquals(Errno.EACCES, errno(() -> as.mprotect(ro, 4096, Prot.PROT_READ | Prot.PROT_WRITE)));
            assertEquals(Errno.EBUSY, errno(() -> f.addSeals(Inode.F_SEAL_WRITE)), "the old mapping still writes");
        }
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
