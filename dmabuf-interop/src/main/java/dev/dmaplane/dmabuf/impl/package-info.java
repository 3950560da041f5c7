/** The dma-buf core's implementation; not exported. */
package dev.dmaplane.dmabuf.impl;
