package dev.dmaplane.vfio.impl;

import dev.dmaplane.resource.UObject;

/**
 * A descriptor of the process's table that another subsystem installed (a verbs object, ...), seen through VFIO's
 * calls: it has none of VFIO's ioctls ({@code ENOTTY}) and is closed by its owner's {@code release}, never here.
 */
record ForeignFile(UObject object) implements VfioFile {
    @Override
    public void release() {
        // the table releases the object itself
    }

    @Override
    public String toString() {
        return object.type() + " file " + object.handle();
    }
}
