package dev.dmaplane.fence;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * The driver's hooks into its fences, the part of {@code struct dma_fence_ops} that decides when a fence signals
 * ({@code include/linux/dma-fence.h}); the names live on the {@link FenceContext}. Both hooks run without any
 * fence lock held and may call {@link Fence#signal()}.
 */
@ConsumerType
public interface FenceOps {
    /** Hooks that do nothing: the driver signals its fences itself. */
    FenceOps NONE = new FenceOps() {
    };

    /**
     * {@code enable_signaling}: called once, the first time someone waits for or adds a callback to a pending
     * {@code fence}, so a driver can arm an interrupt only when someone cares. Returning {@code false} says the
     * fence has already completed, and the core signals it.
     */
    default boolean enableSignaling(Fence fence) {
        return true;
    }

    /**
     * {@code signaled}: a poll of the hardware (a seqno in memory, say) for whether {@code fence} has completed;
     * when it answers {@code true}, {@link Fence#isSignaled()} signals the fence.
     */
    default boolean signaled(Fence fence) {
        return false;
    }
}
