package dev.dmaplane.gpudirect;

/** The parts of the demo, in the order they run. */
public enum Scenario {
    /** [1] GPUDirect RDMA: a VRAM object registered on rxe0 peer-to-peer, written and read by rxe1, computed on by the GPU, beside the bounce path. */
    GPUDIRECT,
    /** [2] No peer-to-peer path: the HCA on the other root port registers the same object, which moves to host memory. */
    NO_P2P,
    /** [3] Eviction under traffic: another context fills VRAM while rxe1 writes into a registered object. */
    EVICTION,
    /** [4] The fallbacks NCCL and libfabric take when the dma-buf path refuses. */
    FALLBACKS
}
