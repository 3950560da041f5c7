package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * A refused {@code ibv_post_send}/{@code ibv_post_recv}/{@code ibv_post_srq_recv}: the errno the call returns and
 * {@code bad_wr}, the first work request not posted. The requests before it were posted and will complete.
 */
public final class PostException extends ErrnoException {
    private static final long serialVersionUID = 1L;

    private final transient WorkRequest badWr;
    private final int badIndex;

    public PostException(Errno errno, WorkRequest badWr, int badIndex, String message) {
        super(errno, "bad_wr #" + badIndex + " (wr_id " + (badWr == null ? "?" : badWr.wrId()) + "): " + message);
        this.badWr = badWr;
        this.badIndex = badIndex;
    }

    /** The first work request that was not posted. */
    public WorkRequest badWr() {
        return badWr;
    }

    /** Its position in the list given to the post call. */
    public int badIndex() {
        return badIndex;
    }
}
