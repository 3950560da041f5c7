package dev.dmaplane.driver.siw;

/**
 * An inbound RDMA READ the responder serves ({@code siw_init_rresp}, the IRQ entry): read {@code length} bytes at
 * the source STag and offset and send them as tagged Read Response segments into the requester's sink.
 */
record ReadResponse(int sinkStag, long sinkTo, int length, int srcStag, long srcTo) {
}
