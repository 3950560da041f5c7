package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;

/**
 * What a storm may leave behind, counted through the public APIs as {@code /proc/meminfo}, {@code debugfs/dma-buf},
 * {@code rdma resource} and DRM fdinfo show it: host frames, pinned frames, live DMA mappings, dma-bufs, verbs
 * objects of every RDMA device, accelerator devices and their open contexts.
 */
record Leftovers(long frames, long pinnedFrames, int dmaMappings, int dmaBufs, int verbsObjects, int accelDevices,
                 int accelContexts) {
    static Leftovers of(Machine machine, AccelCore accel, RdmaCore rdma) {
        int verbs = rdma.devices().stream().mapToInt(RdmaDevice::objectCount).sum();
        int contexts = accel.devices().stream().mapToInt(d -> d.contexts().size()).sum();
        return new Leftovers(machine.memory().allocatedFrames(), machine.memory().pinnedFrames(),
                machine.activeDmaMappings(), DmaBufs.of(machine).list().size(), verbs, accel.devices().size(),
                contexts);
    }
}
