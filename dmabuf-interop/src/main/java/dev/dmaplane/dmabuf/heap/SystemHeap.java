package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;


/**
 * The system dma-heap ({@code /dev/dma_heap/system}; {@code drivers/dma-buf/dma-heap.c} and
 * {@code heaps/system_heap.c}): zeroed host pages, the largest blocks first, exported as a static dma-buf whose
 * map gives each importer IOVAs of its own ({@code dma_map_sgtable} on the importer's device). The pages go back
 * when the buffer's last reference goes.
 */
public final class SystemHeap {
    /** The heap's name, also the exporter name in bufinfo. */
    public static final String NAME = "system";

    private final DmaBufs registry;
    private final HostMemory mem;

    public SystemHeap(DmaBufs registry) {
        this.registry = ErrnoException.requireNonNull(registry, "registry");
        this.mem = registry.memory();
    }

    /**
     * {@code DMA_HEAP_IOCTL_ALLOC}: {@code len} is rounded up to whole pages.
     *
     * @throws ErrnoException {@code EINVAL} for a length that is 0 (or negative, or overflows when rounded up),
     *                        as {@code dma_heap_buffer_alloc} does; {@code ENOMEM} beyond the machine's RAM or
     *                        when no pages are left, nothing allocated then
     */
    public DmaBuf allocate(long len) {
        long size = len <= 0 || len > Long.MAX_VALUE - HostMemory.PAGE_SIZE ? 0
                : (len + HostMemory.PAGE_SIZE - 1) & ~(HostMemory.PAGE_SIZE - 1);
        ErrnoException.check(size > 0, Errno.EINVAL, "system heap: length " + len + " rounds to no pages");
        HostBacking backing = HostBacking.allocate(mem, size);
        try {
            return registry.export(ExportInfo.of(NAME, size, ops(backing)).withPriv(backing));
        } catch (RuntimeException e) {
            backing.free();
            throw e;
        }
    }

    static Exporter ops(HostBacking backing) {
        return Exporter.builder()
                .map((a, dir) -> a.device().dma().mapSg(backing.sgTable(), dir))
                .unmap((a, sg, dir) -> a.device().dma().unmapSg(sg, dir))
                .release(buf -> backing.free())
                .cpuRead((buf, off, dst) -> backing.read(off, dst))
                .cpuWrite((buf, off, src) -> backing.write(off, src))
                .beginCpuAccess((buf, dir) -> checkDirection(dir))
                .endCpuAccess((buf, dir) -> checkDirection(dir))
                .build();
    }

    private static void checkDirection(DmaDirection dir) {
        ErrnoException.check(dir != DmaDirection.NONE, Errno.EINVAL, "CPU access with direction NONE");
    }
}
