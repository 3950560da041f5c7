package dev.dmaplane.iommu.impl;

/**
 * The free IOVA ranges of one domain, the counterpart of the {@code iova_domain} rbtree in
 * {@code drivers/iommu/iova.c}, kept as an AVL tree of disjoint {@code [start, end)} page-frame ranges ordered by
 * start and augmented (as the "rbtree_augmented" proposal for alloc_iova) with the largest size-aligned block each
 * subtree can still hand out. That makes the top-down search below a limit O(log n) instead of the kernel's walk.
 *
 * <p>Units are granule frame numbers (pfns). A request of {@code n} frames is size-aligned: it starts at a multiple of
 * {@code roundup_pow_of_two(n)}, as {@code alloc_iova(..., size_aligned=true)}. For a free range, {@link #capacity}
 * is the largest {@code n} such a request can take from it; fitting is monotone in {@code n} (an aligned start for
 * {@code n} is also aligned for any smaller request), so comparing with the subtree maximum prunes exactly.
 *
 * <p>Not thread-safe: the owner serialises access, as the kernel does with {@code iova_rbtree_lock}.
 */
public final class FreeIovaTree {

    private static final class Node {
        long start;
        long end;
        long capacity;
        long maxCapacity;
        int height;
        Node left;
        Node right;

        Node(long start, long end) {
            reset(start, end);
        }

        Node reset(long start, long end) {
            set(start, end);
            this.height = 1;
            this.maxCapacity = capacity;
            this.left = null;
            this.right = null;
            return this;
        }

        void set(long start, long end) {
            this.start = start;
            this.end = end;
            this.capacity = FreeIovaTree.capacity(start, end);
        }
    }

    private Node root;
    /** The last node unlinked, reused by the next insert so that a split-then-merge cycle allocates nothing. */
    private Node spare;
    private int ranges;
    private long freeFrames;

    /** Number of disjoint free ranges (after coalescing). */
    public int ranges() {
        return ranges;
    }

    /** Total free frames. */
    public long freeFrames() {
        return freeFrames;
    }

    /**
     * The largest size-aligned request {@code [start, end)} can satisfy: with {@code k} the order of the largest
     * naturally aligned block inside the range, any request up to {@code 2^k} fits, and a request between
     * {@code 2^k} and {@code 2^(k+1)} fits only from the single {@code 2^(k+1)}-aligned frame in the range, if any.
     */
    static long capacity(long start, long end) {
        long len = end - start;
        int m = 63 - Long.numberOfLeadingZeros(len);
        int k = m;
        if (alignUp(start, 1L << m) + (1L << m) > end) {
            k = m - 1; // a block of half that size always fits in a range of at least 2^m frames
        }
        long bigAligned = alignUp(start, 1L << (k + 1));
        long tail = bigAligned < end ? end - bigAligned : 0;
        return Math.max(1L << k, tail);
    }

    static long alignUp(long value, long pow2) {
        return (value + pow2 - 1) & -pow2;
    }

    /** {@code roundup_pow_of_two(frames)} for {@code frames >= 1} and below {@code 2^62}. */
    public static long roundUpPow2(long frames) {
        return frames <= 1 ? 1 : Long.highestOneBit(frames - 1) << 1;
    }

    /**
     * Adds a free range that must not touch any free range already in the tree; used to seed the domain.
     *
     * @throws IllegalStateException if it overlaps a free range (a caller bug, not user input)
     */
    public void addRange(long start, long end) {
        release(start, end - start);
    }

    /**
     * Takes {@code frames} frames, aligned to {@code roundup_pow_of_two(frames)}, at the highest address whose end is
     * at most {@code limit} (the top-down policy of {@code __alloc_and_insert_iova_range}).
     *
     * @return the first frame, or {@code -1} when nothing below the limit fits
     */
    public long allocSizeAligned(long frames, long limit) {
        Node straddler = floor(root, limit - 1);
        if (straddler == null) {
            return -1;
        }
        long searchBelow = limit;
        if (straddler.end > limit) {
            if (straddler.start < limit && capacity(straddler.start, limit) >= frames) {
                return carve(straddler, frames, limit);
            }
            searchBelow = straddler.start;
        }
        Node fit = rightmostFitting(root, searchBelow, frames);
        return fit == null ? -1 : carve(fit, frames, fit.end);
    }

    private long carve(Node n, long frames, long top) {
        long align = roundUpPow2(frames);
        long pfn = (top - frames) & -align;
        if (pfn < n.start) {
            throw new IllegalStateException("capacity bookkeeping broken at pfn 0x" + Long.toHexString(n.start));
        }
        long a = n.start;
        long b = n.end;
        long tail = pfn + frames;
        if (pfn > a && tail < b) {
            resize(root, a, a, pfn);
            root = insert(root, node(tail, b));
            ranges++;
        } else if (pfn > a) {
            resize(root, a, a, pfn);
        } else if (tail < b) {
            resize(root, a, tail, b);
        } else {
            root = delete(root, a);
            ranges--;
        }
        freeFrames -= frames;
        return pfn;
    }

    /**
     * Returns {@code [pfn, pfn + frames)} to the tree, merging it with the free neighbours on either side so that
     * churn leaves no fragments behind.
     *
     * @throws IllegalStateException if the range is already (partly) free
     */
    public void release(long pfn, long frames) {
        long end = pfn + frames;
        Node below = floor(root, pfn);
        if (below != null && below.end > pfn) {
            throw new IllegalStateException("frames 0x" + Long.toHexString(pfn) + "+" + frames + " already free");
        }
        Node above = ceiling(root, pfn);
        if (above != null && above.start < end) {
            throw new IllegalStateException("frames 0x" + Long.toHexString(pfn) + "+" + frames + " already free");
        }
        boolean mergeBelow = below != null && below.end == pfn;
        boolean mergeAbove = above != null && above.start == end;
        if (mergeBelow && mergeAbove) {
            long belowStart = below.start;
            long aboveStart = above.start;
            long aboveEnd = above.end;
            root = delete(root, aboveStart);
            ranges--;
            resize(root, belowStart, belowStart, aboveEnd);
        } else if (mergeBelow) {
            resize(root, below.start, below.start, end);
        } else if (mergeAbove) {
            resize(root, above.start, pfn, above.end);
        } else {
            root = insert(root, node(pfn, end));
            ranges++;
        }
        freeFrames += frames;
    }

    /**
     * Takes whatever part of {@code [start, end)} is free out of the tree for good ({@code reserve_iova}); frames
     * already handed out stay with their owners.
     *
     * @return the number of free frames taken
     */
    public long reserve(long start, long end) {
        long taken = 0;
        for (Node n = floor(root, end - 1); n != null && n.end > start; n = floor(root, end - 1)) {
            long a = n.start;
            long b = n.end;
            long lo = Math.max(a, start);
            long hi = Math.min(b, end);
            if (a < lo && hi < b) {
                resize(root, a, a, lo);
                root = insert(root, new Node(hi, b));
                ranges++;
            } else if (a < lo) {
                resize(root, a, a, lo);
            } else if (hi < b) {
                resize(root, a, hi, b);
            } else {
                root = delete(root, a);
                ranges--;
            }
            freeFrames -= hi - lo;
            taken += hi - lo;
        }
        return taken;
    }

    /** Whether {@code [pfn, pfn + frames)} lies entirely inside one free range. */
    public boolean isFree(long pfn, long frames) {
        Node n = floor(root, pfn);
        return n != null && n.end >= pfn + frames;
    }

    /** Calls {@code visitor} for each free range in ascending order (for tests and debug listings). */
    public void forEachRange(RangeVisitor visitor) {
        visit(root, visitor);
    }

    /** Receives one free range {@code [start, end)} in frames. */
    @FunctionalInterface
    public interface RangeVisitor {
        void range(long start, long end);
    }

    private static void visit(Node n, RangeVisitor v) {
        if (n != null) {
            visit(n.left, v);
            v.range(n.start, n.end);
            visit(n.right, v);
        }
    }

    private Node node(long start, long end) {
        Node n = spare;
        if (n == null) {
            return new Node(start, end);
        }
        spare = null;
        return n.reset(start, end);
    }

    private static Node floor(Node n, long key) {
        Node best = null;
        while (n != null) {
            if (n.start <= key) {
                best = n;
                n = n.right;
            } else {
                n = n.left;
            }
        }
        return best;
    }

    private static Node ceiling(Node n, long key) {
        Node best = null;
        while (n != null) {
            if (n.start >= key) {
                best = n;
                n = n.left;
            } else {
                n = n.right;
            }
        }
        return best;
    }

    /**
     * The free range with the highest start below {@code bound} whose capacity is at least {@code frames}. Walks the
     * boundary path once; whenever it turns into a subtree lying wholly below the bound whose maximum is big enough,
     * the descent there cannot fail, so the whole search is O(height).
     */
    private static Node rightmostFitting(Node n, long bound, long frames) {
        if (n == null || n.maxCapacity < frames) {
            return null;
        }
        if (n.start >= bound) {
            return rightmostFitting(n.left, bound, frames);
        }
        Node r = rightmostFitting(n.right, bound, frames);
        if (r != null) {
            return r;
        }
        if (n.capacity >= frames) {
            return n;
        }
        return rightmostFitting(n.left, bound, frames);
    }

    private static int height(Node n) {
        return n == null ? 0 : n.height;
    }

    private static void update(Node n) {
        n.height = 1 + Math.max(height(n.left), height(n.right));
        long m = n.capacity;
        if (n.left != null && n.left.maxCapacity > m) {
            m = n.left.maxCapacity;
        }
        if (n.right != null && n.right.maxCapacity > m) {
            m = n.right.maxCapacity;
        }
        n.maxCapacity = m;
    }

    private static Node rotateRight(Node n) {
        Node l = n.left;
        n.left = l.right;
        l.right = n;
        update(n);
        update(l);
        return l;
    }

    private static Node rotateLeft(Node n) {
        Node r = n.right;
        n.right = r.left;
        r.left = n;
        update(n);
        update(r);
        return r;
    }

    private static Node balance(Node n) {
        update(n);
        int bf = height(n.left) - height(n.right);
        if (bf > 1) {
            if (height(n.left.left) < height(n.left.right)) {
                n.left = rotateLeft(n.left);
            }
            return rotateRight(n);
        }
        if (bf < -1) {
            if (height(n.right.right) < height(n.right.left)) {
                n.right = rotateRight(n.right);
            }
            return rotateLeft(n);
        }
        return n;
    }

    private static Node insert(Node n, Node fresh) {
        if (n == null) {
            return fresh;
        }
        if (fresh.start < n.start) {
            n.left = insert(n.left, fresh);
        } else {
            n.right = insert(n.right, fresh);
        }
        return balance(n);
    }

    private Node delete(Node n, long start) {
        if (n == null) {
            throw new IllegalStateException("no free range starts at pfn 0x" + Long.toHexString(start));
        }
        if (start < n.start) {
            n.left = delete(n.left, start);
        } else if (start > n.start) {
            n.right = delete(n.right, start);
        } else {
            if (n.left == null || n.right == null) {
                spare = n;
                return n.left == null ? n.right : n.left;
            }
            Node successor = n.right;
            while (successor.left != null) {
                successor = successor.left;
            }
            n.right = delete(n.right, successor.start);
            n.set(successor.start, successor.end);
        }
        return balance(n);
    }

    /** Changes the bounds of the range starting at {@code key} in place; the new bounds keep the tree order. */
    private static void resize(Node n, long key, long newStart, long newEnd) {
        if (n == null) {
            throw new IllegalStateException("no free range starts at pfn 0x" + Long.toHexString(key));
        }
        if (key < n.start) {
            resize(n.left, key, newStart, newEnd);
        } else if (key > n.start) {
            resize(n.right, key, newStart, newEnd);
        } else {
            n.set(newStart, newEnd);
        }
        update(n);
    }
}
