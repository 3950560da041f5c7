package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.util.Set;

/**
 * A snapshot of one virtual memory area ({@code struct vm_area_struct}), {@code [start, end)}, page aligned.
 *
 * @param start   first address
 * @param end     first address after the area
 * @param prot    {@link Prot} bits
 * @param flags   further flags
 * @param backing what is mapped
 */
public record Vma(long start, long end, int prot, Set<VmaFlag> flags, VmaBacking backing) {
    public Vma {
        if (start < 0 || end <= start || ((start | end) & (HostMemory.PAGE_SIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "bad VMA bounds 0x" + Long.toHexString(start) + "-0x"
                    + Long.toHexString(end));
        }
        flags = Set.copyOf(flags);
    }

    public long length() {
        return end - start;
    }

    public boolean contains(long addr) {
        return addr >= start && addr < end;
    }

    public boolean isShared() {
        return flags.contains(VmaFlag.SHARED);
    }

    /** One line as {@code /proc/pid/maps} prints it. */
    @Override
    public String toString() {
        String perms = Prot.letters(prot) + (isShared() ? "s" : "p");
        String tail = switch (backing) {
            case VmaBacking.Anonymous a -> String.format("%08x 00:00 0", 0);
            case VmaBacking.File f -> String.format("%08x %s %d %s", f.pgoff() << HostMemory.PAGE_SHIFT,
                    f.inode().fs().name(), f.inode().ino(), f.inode().path());
            case VmaBacking.Dax d -> String.format("%08x %s %d %s (dax)", d.pgoff() << HostMemory.PAGE_SHIFT,
                    d.inode().fs().name(), d.inode().ino(), d.inode().path());
            case VmaBacking.PciBar b -> String.format("%08x 00:00 0 %s BAR%d", b.offset(), b.function().bdf(), b.bar());
        };
        return String.format("%012x-%012x %s %s", start, end, perms, tail);
    }
}
