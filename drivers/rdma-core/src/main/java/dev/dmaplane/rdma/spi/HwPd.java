package dev.dmaplane.rdma.spi;

/** A protection domain as the provider sees it. */
public interface HwPd extends HwObject {
    /** Device-wide PD number. */
    int pdn();
}
