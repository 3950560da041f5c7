package dev.dmaplane.dmabuf;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;

import java.util.Objects;

/**
 * A dma-buf file descriptor in a user context: holds one reference to the buffer, dropped when the handle is
 * closed ({@code UContext.destroy(handle)}) or the context goes. {@link #dup()} makes a second handle on the same
 * buffer, as {@code dup(2)}. {@link DmaBufs#get(UContext, int)} is {@code dma_buf_get(fd)}.
 */
public final class DmaBufHandle extends UObject {
    /** The UObject type of a dma-buf handle. */
    public static final String TYPE = "dmabuf";

    private final DmaBuf dmabuf;

    private DmaBufHandle(DmaBuf dmabuf) {
        super(TYPE);
        this.dmabuf = Objects.requireNonNull(dmabuf, "dmabuf");
        dmabuf.get();
    }

    /** Installs a new handle on {@code dmabuf} in {@code ctx}; on failure no reference is left behind. */
    public static DmaBufHandle install(DmaBuf dmabuf, UContext ctx) {
        ErrnoException.check(ctx != null, Errno.EINVAL, "no context to install a dma-buf fd in");
        return ctx.register(new DmaBufHandle(dmabuf));
    }

    public DmaBuf dmabuf() {
        return dmabuf;
    }

    /**
     * {@code dup(2)}: a second handle on the same buffer in the same context, with its own reference.
     *
     * @throws ErrnoException {@code EBADF} if this handle was closed
     */
    public DmaBufHandle dup() {
        ErrnoException.check(!isDestroyed() && context() != null, Errno.EBADF,
                "dup of dma-buf fd " + handle() + ", which is closed");
        return install(dmabuf, context());
    }

    @Override
    protected void release(RemoveReason reason) {
        dmabuf.put();
    }

    @Override
    public String describe() {
        return "ino=" + dmabuf.ino() + " size=" + dmabuf.size() + " exp=" + dmabuf.exporterName();
    }
}
