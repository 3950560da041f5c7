package dev.dmaplane.vfio.uapi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.VfioLayouts;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.HashMap;
import java.util.Map;
import java.util.function.IntFunction;

/**
 * One file kind's {@code unlocked_ioctl}: its commands, each with how its argument is read, checked in the order the
 * kernel's handlers check it: {@code copy_from_user} of {@code minsz} ({@code EFAULT}), {@code argsz < minsz}
 * ({@code EINVAL}), the tail past the known structure ({@link Tail}), unknown flags (the command's errno), then the
 * handler. A command not in the table gets the file's answer for unknown commands ({@code ENOTTY} in general).
 */
public final class IoctlTable {
    /** How a command's argument is passed. */
    public enum Arg {
        /** The argument is a number (an extension, an IOMMU type), not a pointer. */
        VALUE,
        /** A pointer to a structure starting with {@code __u32 argsz; __u32 flags}. */
        STRUCT,
        /** A pointer to an {@code int} (a file descriptor). */
        INT_POINTER,
        /** A pointer to a NUL-terminated string (a device name). */
        STRING
    }

    /** What the kernel does with the bytes from {@code minsz} to {@code argsz}. */
    public enum Tail {
        /**
         * {@code copy_from_user(&s, arg, minsz)}: what the VFIO type 1, group and vfio-pci handlers do; bytes past
         * the structure are never read.
         */
        IGNORED,
        /**
         * {@code copy_struct_from_user}: a larger {@code argsz} is accepted only if every byte past the kernel's
         * structure is zero, else {@code E2BIG} (iommufd's rule).
         */
        COPY_STRUCT
    }

    /** Runs a command whose argument passed the checks. */
    @FunctionalInterface
    public interface Handler {
        /**
         * @param arg   the user's structure, int or string ({@code null} for {@link Arg#VALUE})
         * @param value the number of a {@link Arg#VALUE} command
         * @return the ioctl's non-negative return value
         */
        long run(MemorySegment arg, long value);
    }

    /**
     * One command.
     *
     * @param structSize   the size of the kernel's structure ({@code sizeof}), for {@link Tail#COPY_STRUCT}
     * @param flagMask     the flags the kernel knows; others get {@code unknownFlags}
     */
    public record Command(int cmd, String name, Arg arg, long minsz, long structSize, int flagMask,
                          Errno unknownFlags, Tail tail, Handler handler) {
    }

    private final String file;
    private final Map<Integer, Command> commands = new HashMap<>();
    private final IntFunction<ErrnoException> unknown;

    /**
     * @param file    the file kind, for messages ({@code "vfio container"})
     * @param unknown the error for a command not in the table
     */
    public IoctlTable(String file, IntFunction<ErrnoException> unknown) {
        this.file = file;
        this.unknown = unknown;
    }

    /** An ioctl table whose unknown commands are {@code ENOTTY}. */
    public static IoctlTable enotty(String file) {
        return new IoctlTable(file, cmd -> new ErrnoException(Errno.ENOTTY,
                String.format("%s: ioctl %#x is not a command of this file", file, cmd)));
    }

    /** Adds a command taking a number. */
    public IoctlTable value(int cmd, String name, Handler h) {
        return add(new Command(cmd, name, Arg.VALUE, 0, 0, -1, Errno.EINVAL, Tail.IGNORED, h));
    }

    /** Adds a command taking a pointer to an {@code int} or a string. */
    public IoctlTable pointer(int cmd, String name, Arg arg, Handler h) {
        return add(new Command(cmd, name, arg, arg == Arg.INT_POINTER ? 4 : 1, 0, -1, Errno.EINVAL, Tail.IGNORED, h));
    }

    /** Adds a command taking a structure read as {@code copy_from_user(minsz)} with flags checked against a mask. */
    public IoctlTable struct(int cmd, String name, long minsz, int flagMask, Errno unknownFlags, Handler h) {
        return add(new Command(cmd, name, Arg.STRUCT, minsz, minsz, flagMask, unknownFlags, Tail.IGNORED, h));
    }

    /** Adds a command. */
    public IoctlTable add(Command c) {
        if (commands.putIfAbsent(c.cmd(), c) != null) {
            throw new ErrnoException(Errno.EEXIST, file + ": ioctl " + Integer.toHexString(c.cmd()) + " twice");
        }
        return this;
    }

    /** The command {@code cmd}, if this file has it. */
    public boolean has(int cmd) {
        return commands.containsKey(cmd);
    }

    /**
     * {@code ioctl(fd, cmd, arg)} with a pointer argument.
     *
     * @throws ErrnoException the unknown-command errno, {@code EFAULT} for a null pointer or a structure shorter
     *                        than the bytes the kernel copies, {@code EINVAL} for {@code argsz < minsz}, {@code E2BIG}
     *                        for a non-zero tail where the command uses {@code copy_struct_from_user}, the command's
     *                        errno for unknown flags, or what the handler answers
     */
    public long dispatch(int cmd, MemorySegment arg) {
        Command c = commands.get(cmd);
        if (c == null) {
            throw unknown.apply(cmd);
        }
        if (c.arg() == Arg.VALUE) {
            return c.handler().run(null, arg == null ? 0 : arg.address());
        }
        if (arg == null || arg.byteSize() < c.minsz()) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s %s: copy_from_user of %d bytes from %s faults",
                    file, c.name(), c.minsz(), arg == null ? "NULL" : arg.byteSize() + " bytes"));
        }
        if (c.arg() == Arg.STRUCT) {
            checkStruct(c, arg);
        }
        return guarded(c, arg, 0);
    }

    /**
     * {@code ioctl(fd, cmd, value)} with a number argument; for a pointer command the number is no address this
     * model can read ({@code EFAULT}).
     */
    public long dispatch(int cmd, long value) {
        Command c = commands.get(cmd);
        if (c == null) {
            throw unknown.apply(cmd);
        }
        if (c.arg() != Arg.VALUE) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s %s: argument %#x is not a user pointer",
                    file, c.name(), value));
        }
        return guarded(c, null, value);
    }

    private void checkStruct(Command c, MemorySegment arg) {
        long argsz = Integer.toUnsignedLong(arg.get(VfioLayouts.U32, 0));
        if (argsz < c.minsz()) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s %s: argsz %d is below the minimum %d",
                    file, c.name(), argsz, c.minsz()));
        }
        if (c.tail() == Tail.COPY_STRUCT && argsz > c.structSize()) {
            if (arg.byteSize() < argsz) {
                throw new ErrnoException(Errno.EFAULT, String.format("%s %s: argsz %d past the %d-byte buffer",
                        file, c.name(), argsz, arg.byteSize()));
            }
            for (long i = c.structSize(); i < argsz; i++) {
                if (arg.get(ValueLayout.JAVA_BYTE, i) != 0) {
                    throw new ErrnoException(Errno.E2BIG, String.format(
                            "%s %s: argsz %d has a non-zero byte at %d, past the kernel's %d-byte structure",
                            file, c.name(), argsz, i, c.structSize()));
                }
            }
        }
        int flags = arg.get(VfioLayouts.U32, 4);
        if ((flags & ~c.flagMask()) != 0) {
            throw new ErrnoException(c.unknownFlags(), String.format("%s %s: unknown flags %#x (known %#x)",
                    file, c.name(), flags & ~c.flagMask(), c.flagMask()));
        }
    }

    /** Runs the handler; a write past the user's buffer is the {@code EFAULT} of a failed {@code copy_to_user}. */
    private long guarded(Command c, MemorySegment arg, long value) {
        try {
            return c.handler().run(arg, value);
        } catch (IndexOutOfBoundsException e) {
            throw new ErrnoException(Errno.EFAULT, file + " " + c.name() + ": copy_to_user past the user's buffer: "
                    + e.getMessage(), e);
        }
    }
}
