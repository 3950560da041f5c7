package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** spdk_nvme_perf's {@code -w} I/O patterns ({@code app/spdk_nvme_perf/perf.c}, {@code parse_args}). */
public enum Workload {
    READ(false, true, false),
    WRITE(false, false, true),
    RANDREAD(true, true, false),
    RANDWRITE(true, false, true),
    RW(false, true, true),
    RANDRW(true, true, true);

    final boolean random;
    final boolean reads;
    final boolean writes;

    Workload(boolean random, boolean reads, boolean writes) {
        this.random = random;
        this.reads = reads;
        this.writes = writes;
    }

    /** Whether {@code -M} (the read percentage) applies: both reads and writes. */
    public boolean mixed() {
        return reads && writes;
    }

    /** Whether offsets are random rather than sequential. */
    public boolean random() {
        return random;
    }

    /** The name as {@code -w} takes it. */
    public String option() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * The pattern {@code -w} names.
     *
     * @throws ErrnoException {@code EINVAL} naming the word and the patterns there are
     */
    public static Workload of(String word) {
        ErrnoException.requireNonNull(word, "-w");
        for (Workload w : values()) {
            if (w.option().equals(word)) {
                return w;
            }
        }
        throw new ErrnoException(Errno.EINVAL, "-w " + word + ": io pattern type must be one of "
                + Arrays.stream(values()).map(Workload::option).collect(Collectors.joining(", ")));
    }
}
