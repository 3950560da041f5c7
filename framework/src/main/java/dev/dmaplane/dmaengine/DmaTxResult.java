package dev.dmaplane.dmaengine;

/** {@code struct dmaengine_result} ({@code include/linux/dmaengine.h}): the result and the bytes not transferred. */
public record DmaTxResult(DmaResult result, long residue) {
}
