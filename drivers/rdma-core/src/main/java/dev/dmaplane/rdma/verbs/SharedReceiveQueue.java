package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/** A shared receive queue ({@code ibv_create_srq}). */
@ProviderType
public interface SharedReceiveQueue extends VerbsObject {
    ProtectionDomain pd();

    /** {@code ibv_query_srq}. */
    SrqAttr query();

    /**
     * {@code ibv_modify_srq}: {@link SrqAttr#MAX_WR} resizes (needs SRQ_RESIZE), {@link SrqAttr#LIMIT} arms the
     * limit event.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL}
     */
    void modify(SrqAttr attr, int mask);

    /** {@code ibv_post_srq_recv}. */
    void postRecv(List<RecvWr> wrs);

    default void postRecv(RecvWr wr) {
        postRecv(List.of(wr));
    }
}
