package dev.dmaplane.vfio.impl;

import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UObject;

/**
 * A VFIO file installed in a process's descriptor table ({@code fd_install} into {@code files_struct}, here
 * {@code AddressSpace.files()}): closing the descriptor, by {@code VfioUser.close(fd)}, by the table or by the
 * process's exit, runs the file's {@code release} once.
 */
final class OpenFile extends UObject {
    /** The object type of a VFIO file in the table. */
    static final String TYPE = "vfio-file";

    private final VfioFile file;
    private final UserImpl user;
    private volatile boolean released;

    OpenFile(VfioFile file, UserImpl user) {
        super(TYPE);
        this.file = file;
        this.user = user;
    }

    VfioFile file() {
        return file;
    }

    /** Whether {@link #release} began: set before the user forgets the file. */
    boolean isReleased() {
        return released;
    }

    @Override
    protected void release(RemoveReason reason) {
        released = true;
        user.closed(this);
        file.release();
    }

    @Override
    public String describe() {
        return file.toString();
    }
}
