package dev.dmaplane.dmaengine;

import dev.dmaplane.errno.ErrnoException;

/** {@code struct dmaengine_result} ({@code include/linux/dmaengine.h}): the result and the bytes not transferred. */
public record DmaTxResult(DmaResult result, long residue) {
    public DmaTxResult {
        ErrnoException.requireNonNull(result, "dmaengine result");
    }
}
