package dev.dmaplane.mm;

/** Page protection bits of {@code mmap(2)} and {@code mprotect(2)} ({@code include/uapi/asm-generic/mman-common.h}). */
public final class Prot {
    public static final int PROT_NONE = 0;
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int PROT_EXEC = 4;
    /** Every bit dmaplane accepts. */
    public static final int ALL = PROT_READ | PROT_WRITE | PROT_EXEC;

    private Prot() {
    }

    /** Whether {@code prot} has only known bits. */
    public static boolean isValid(int prot) {
        return (prot & ~ALL) == 0;
    }

    /** The {@code rwx} letters {@code /proc/pid/maps} shows, e.g. {@code "rw-"}. */
    public static String letters(int prot) {
        return ((prot & PROT_READ) != 0 ? "r" : "-") + ((prot & PROT_WRITE) != 0 ? "w" : "-")
                + ((prot & PROT_EXEC) != 0 ? "x" : "-");
    }
}
