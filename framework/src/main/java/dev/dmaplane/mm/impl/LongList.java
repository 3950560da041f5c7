package dev.dmaplane.mm.impl;

import java.util.Arrays;

/** A growable list of primitive longs, so collecting a million frame numbers boxes none of them. */
final class LongList {
    private long[] items = new long[16];
    private int size;

    void add(long v) {
        if (size == items.length) {
            items = Arrays.copyOf(items, size * 2);
        }
        items[size++] = v;
    }

    long get(int i) {
        return items[i];
    }

    int size() {
        return size;
    }
}
