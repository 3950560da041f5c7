package dev.dmaplane.iommu.impl;

/**
 * A fixed-size stack of cached frame numbers of one size class ({@code struct iova_magazine}). Not thread-safe: a
 * magazine is only touched under the lock of the CPU slot or depot that holds it.
 */
final class IovaMagazine {
    /** Frames per magazine ({@code IOVA_MAG_SIZE}). */
    static final int SIZE = 128;

    private final long[] pfns = new long[SIZE];
    private int size;

    boolean isFull() {
        return size == SIZE;
    }

    boolean isEmpty() {
        return size == 0;
    }

    void push(long pfn) {
        pfns[size++] = pfn;
    }

    /**
     * Pops a frame that is at most {@code maxPfn}, searching down from the top as {@code iova_magazine_pop} does (a
     * bounded search of at most {@link #SIZE} entries); the hole is filled with the top entry.
     *
     * @return the frame, or {@code 0} when none in the magazine is low enough
     */
    long popAtMost(long maxPfn) {
        int i = size - 1;
        while (i >= 0 && pfns[i] > maxPfn) {
            i--;
        }
        if (i < 0) {
            return 0;
        }
        long pfn = pfns[i];
        pfns[i] = pfns[--size];
        return pfn;
    }

    /** Hands every cached frame to {@code sink} and empties the magazine. */
    void drainTo(IovaRcache.FrameSink sink, long frames) {
        for (int i = 0; i < size; i++) {
            sink.release(pfns[i], frames);
        }
        size = 0;
    }
}
