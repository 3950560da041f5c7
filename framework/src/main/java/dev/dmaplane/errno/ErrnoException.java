package dev.dmaplane.errno;

import java.util.Objects;

/**
 * The one exception type every dmaplane call throws on failure: a kernel {@link Errno} plus a message that
 * names the bad value. Unchecked, as a negative return code is in the kernel: callers handle what they expect.
 */
public class ErrnoException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final Errno errno;

    public ErrnoException(Errno errno, String message) {
        super(Objects.requireNonNull(errno, "errno").name() + ": " + message);
        this.errno = errno;
    }

    public ErrnoException(Errno errno, String message, Throwable cause) {
        super(Objects.requireNonNull(errno, "errno").name() + ": " + message, cause);
        this.errno = errno;
    }

    /** The errno this failure maps to. */
    public Errno errno() {
        return errno;
    }

    /** The negative return code a kernel function would give for this failure ({@code -EINVAL} ...). */
    public int returnCode() {
        return -errno.number();
    }

    /** Throws {@code EINVAL} with {@code message} unless {@code condition} holds. */
    public static void check(boolean condition, Errno errno, String message) {
        if (!condition) {
            throw new ErrnoException(errno, message);
        }
    }

    /** Returns {@code value}, or throws {@code EINVAL} "{@code what} must not be null" (a bad argument, not an NPE). */
    public static <T> T requireNonNull(T value, String what) {
        if (value == null) {
            throw new ErrnoException(Errno.EINVAL, what + " must not be null");
        }
        return value;
    }
}
