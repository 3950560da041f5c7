package dev.dmaplane.vfio.uapi;

import dev.dmaplane.vfio.VfioLayouts;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * A VFIO capability chain ({@code struct vfio_info_cap} of {@code drivers/vfio/vfio_main.c}): capabilities appended
 * in order, each starting with {@code struct vfio_info_cap_header} and aligned to 8 bytes; {@code next} is the offset
 * of the following capability from the start of the info structure ({@code vfio_info_cap_shift}), 0 for the last.
 */
public final class CapChain {
    private final List<MemorySegment> caps = new ArrayList<>();
    private long size;

    /** {@code vfio_info_cap_add}: a zeroed capability of {@code bytes} (header included) with its id and version. */
    public MemorySegment add(long bytes, int id, int version) {
        MemorySegment cap = MemorySegment.ofArray(new byte[(int) align(bytes)]);
        cap.set(VfioLayouts.U16, 0, (short) id);
        cap.set(VfioLayouts.U16, 2, (short) version);
        caps.add(cap);
        size += cap.byteSize();
        return cap;
    }

    /** Bytes of the chain. */
    public long size() {
        return size;
    }

    public boolean isEmpty() {
        return caps.isEmpty();
    }

    /**
     * Copies the chain to {@code arg} at {@code offset} (the size of the info structure) when the user's
     * {@code argsz} holds it, with each {@code next} shifted by {@code offset}.
     *
     * @return the {@code cap_offset} to report: {@code offset}, or 0 when the chain did not fit
     */
    public int copyOut(MemorySegment arg, long offset, long argsz) {
        if (caps.isEmpty() || argsz < offset + size) {
            return 0;
        }
        long at = offset;
        for (int i = 0; i < caps.size(); i++) {
            MemorySegment cap = caps.get(i);
            long next = i + 1 < caps.size() ? at + cap.byteSize() : 0;
            cap.set(VfioLayouts.U32, 4, (int) next);
            MemorySegment.copy(cap, 0, arg, at, cap.byteSize());
            at += cap.byteSize();
        }
        return (int) offset;
    }

    private static long align(long n) {
        return (n + 7) & ~7L;
    }
}
