package dev.dmaplane.pci.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * An error at one entry of a machine file, as a compiler's diagnostic: the entry's path (e.g.
 * {@code pci.hostBridges[0].children[1].bdf}) kept apart from the text, so that a loader holding the file's
 * {@link SpecPositions} can name the line and column of the entry.
 */
public final class SpecException extends ErrnoException {
    private static final long serialVersionUID = 1L;

    private final String path;
    private final boolean atKey;
    private final String text;

    private SpecException(Errno errno, String path, boolean atKey, String text, Throwable cause) {
        super(errno, text, cause);
        this.path = path;
        this.atKey = atKey;
        this.text = text;
    }

    /** An error about the value at {@code path}; {@code text} is the whole message, which starts with the path. */
    public static SpecException at(Errno errno, String path, String text) {
        return new SpecException(errno, path, false, text, null);
    }

    /** An error about the value at {@code path} that {@code cause}, a check deeper down, found. */
    public static SpecException at(Errno errno, String path, String text, Throwable cause) {
        return new SpecException(errno, path, false, text, cause);
    }

    /** An error about the key of the entry at {@code path} itself (an unknown key). */
    public static SpecException atKey(Errno errno, String path, String text) {
        return new SpecException(errno, path, true, text, null);
    }

    /** The path of the bad entry; empty for the whole file. */
    public String path() {
        return path;
    }

    /** Whether the error is about the entry's key rather than its value. */
    public boolean atKey() {
        return atKey;
    }

    /** The message without the errno name. */
    public String text() {
        return text;
    }
}
