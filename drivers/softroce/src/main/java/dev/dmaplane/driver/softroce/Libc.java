package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.Locale;

/**
 * The libc calls {@link MmsgSocket} makes through the foreign-function API: {@code socket(2)},
 * {@code setsockopt(2)}, {@code bind(2)}, {@code sendmmsg(2)}, {@code recvmmsg(2)}, {@code shutdown(2)} and
 * {@code close(2)}, each capturing {@code errno} into a state segment of {@link #CAPTURE}'s layout (read by
 * {@link #errno}), and {@code strerror(3)}. Every handle is a {@code static final} field, which the JIT takes as a
 * constant, so a call through it on the packet path costs what a call from the socket's own class did. Looked up on
 * Linux on x86-64 or AArch64 only (the platforms whose {@code struct mmsghdr} layout {@link MmsgSocket} knows);
 * elsewhere, or without native access, {@link #AVAILABLE} is false and the handles are null.
 */
final class Libc {
    private static final Logger LOG = LoggerFactory.getLogger(Libc.class);
    /** errno values of Linux ({@code asm-generic/errno-base.h}, {@code errno.h}) that the socket tells apart. */
    static final int EINTR = 4;
    static final int EIO = 5;
    static final int EINVAL = 22;
    static final int EMSGSIZE = 90;
    static final int EADDRINUSE = 98;
    static final int EADDRNOTAVAIL = 99;

    /** Whether this platform has the calls (and the layout {@link MmsgSocket} uses). */
    static final boolean AVAILABLE;
    /** The layout of the state segment each call but {@code strerror} captures its {@code errno} into. */
    static final StructLayout CAPTURE;
    private static final VarHandle ERRNO;
    static final MethodHandle SOCKET;
    static final MethodHandle SETSOCKOPT;
    static final MethodHandle BIND;
    static final MethodHandle SENDMMSG;
    static final MethodHandle RECVMMSG;
    static final MethodHandle SHUTDOWN;
    static final MethodHandle CLOSE;
    private static final MethodHandle STRERROR;

    static {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        boolean platform = os.startsWith("linux") && (arch.equals("amd64") || arch.equals("x86_64")
                || arch.equals("aarch64"));
        MethodHandle[] h = new MethodHandle[9];
        StructLayout capture = null;
        VarHandle errno = null;
        boolean ok = false;
        if (platform) {
            try {
                Linker linker = Linker.nativeLinker();
                SymbolLookup libc = linker.defaultLookup();
                capture = Linker.Option.captureStateLayout();
                errno = capture.varHandle(PathElement.groupElement("errno"));
                Linker.Option err = Linker.Option.captureCallState("errno");
                ValueLayout i = ValueLayout.JAVA_INT;
                ValueLayout p = ValueLayout.ADDRESS;
                h[0] = linker.downcallHandle(libc.find("socket").orElseThrow(), FunctionDescriptor.of(i, i, i, i), err);
                h[1] = linker.downcallHandle(libc.find("setsockopt").orElseThrow(),
                        FunctionDescriptor.of(i, i, i, i, p, i), err);
                h[2] = linker.downcallHandle(libc.find("bind").orElseThrow(), FunctionDescriptor.of(i, i, p, i), err);
                h[3] = linker.downcallHandle(libc.find("sendmmsg").orElseThrow(),
                        FunctionDescriptor.of(i, i, p, i, i), err);
                h[4] = linker.downcallHandle(libc.find("recvmmsg").orElseThrow(),
                        FunctionDescriptor.of(i, i, p, i, i, p), err);
                h[5] = linker.downcallHandle(libc.find("shutdown").orElseThrow(), FunctionDescriptor.of(i, i, i), err);
                h[6] = linker.downcallHandle(libc.find("close").orElseThrow(), FunctionDescriptor.of(i, i), err);
                h[7] = linker.downcallHandle(libc.find("strerror").orElseThrow(), FunctionDescriptor.of(p, i));
                ok = true;
            } catch (RuntimeException e) {
                // no native access (--enable-native-access missing) or no such symbol: the channel path serves
                LOG.warn("rxe: no sendmmsg/recvmmsg through the FFM API, UDP sends and receives one datagram per call",
                        e);
            }
        }
        AVAILABLE = ok;
        CAPTURE = capture;
        ERRNO = errno;
        SOCKET = h[0];
        SETSOCKOPT = h[1];
        BIND = h[2];
        SENDMMSG = h[3];
        RECVMMSG = h[4];
        SHUTDOWN = h[5];
        CLOSE = h[6];
        STRERROR = h[7];
    }

    private Libc() {
    }

    /** The {@code errno} a call captured into {@code state}. */
    static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    /** {@code strerror(3)} of {@code errno}, with the number. */
    static String strerror(int errno) {
        try {
            MemorySegment s = (MemorySegment) STRERROR.invokeExact(errno);
            return s.reinterpret(256).getString(0) + " (errno " + errno + ")";
        } catch (Throwable t) {
            throw nativeFailure("rxe: strerror failed to run", t);
        }
    }

    /** A native call that threw what no native call throws: logged with its stack and reported as EIO. */
    static ErrnoException nativeFailure(String what, Throwable t) {
        LOG.error("{}", what, t);
        return new ErrnoException(Errno.EIO, what + ": " + t, t);
    }
}
