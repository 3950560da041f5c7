package dev.dmaplane.testing;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Collectors;

/**
 * Deterministic "is it still blocked?" checks for tests, instead of {@code Thread.sleep(100); assertFalse(f.isDone())}.
 *
 * <p>A sleep proves nothing: on a loaded machine the thread under test may not even have started after 100 ms, and
 * on an idle one the test wastes the time. {@link #awaitBlockedIn} instead waits (bounded by {@link #TIMEOUT},
 * polling with {@link Thread#yield()}) until the thread is parked, waiting or blocked on a monitor <em>at the
 * expected place</em>: its stack, read from the innermost frame outwards, must start with JDK frames only (the
 * park, the condition, the lock), then show the given frames in the given order. Once it holds, the operation has
 * reached its wait and is not done; the test then releases it and waits for completion with {@link Call#get()},
 * bounded too.
 *
 * <p>Frames are named {@code fully.qualified.Class.method}, nested classes with {@code $}, for instance
 * {@code "java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject.awaitUninterruptibly"} or
 * {@code "dev.dmaplane.mm.impl.NotifierTree.readBegin"}. Naming a JDK frame first pins the exact primitive (a
 * condition wait rather than the lock acquisition before it); naming a project frame first accepts any JDK
 * primitive directly under it.
 *
 * <pre>{@code
 * Blocked.Call<Long> reader = Blocked.start("reader", sub::readBegin);
 * reader.awaitBlockedIn("dev.dmaplane.mm.impl.NotifierTree.readBegin");
 * assertFalse(reader.isDone());
 * release.countDown();
 * assertEquals(7L, reader.get());
 * }</pre>
 *
 * <p>This class lives in the framework's test sources and reaches other modules through the framework's
 * {@code tests} jar (test scope only); it is not part of any bundle.
 */
public final class Blocked {
    /** How long {@link #awaitBlockedIn} and {@link Call#get()} wait before they fail the test. */
    public static final Duration TIMEOUT = Duration.ofSeconds(10);

    /** {@link java.util.concurrent.locks.Condition#await()} of the JDK's locks, as an innermost frame. */
    public static final String CONDITION_AWAIT = "java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject.await";
    /** {@link java.util.concurrent.locks.Condition#awaitNanos(long)}, as an innermost frame. */
    public static final String CONDITION_AWAIT_NANOS = "java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject.awaitNanos";
    /** {@link java.util.concurrent.locks.Condition#awaitUninterruptibly()}, as an innermost frame. */
    public static final String CONDITION_AWAIT_UNINTERRUPTIBLY =
            "java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject.awaitUninterruptibly";

    private static final List<String> JDK_PREFIXES = List.of("java.", "javax.", "jdk.", "sun.", "com.sun.");

    private Blocked() {
    }

    /** An operation that may throw, for {@link #run}. */
    @FunctionalInterface
    public interface Action {
        /** Runs the operation. */
        void run() throws Exception;
    }

    /**
     * An operation running on a thread of its own, so a test can look at that thread while the operation waits.
     *
     * @param <T> the operation's result
     */
    public static final class Call<T> {
        private final Thread thread;
        private final CompletableFuture<T> result;

        private Call(Thread thread, CompletableFuture<T> result) {
            this.thread = thread;
            this.result = result;
        }

        /** The thread the operation runs on. */
        public Thread thread() {
            return thread;
        }

        /** Whether the operation has returned or thrown. */
        public boolean isDone() {
            return result.isDone();
        }

        /** The operation's outcome as a future. */
        public Future<T> future() {
            return result;
        }

        /**
         * Waits until the operation's thread is blocked at {@code innermost} (called from {@code callers}); see
         * {@link Blocked#awaitBlockedIn(Thread, String, String...)}.
         *
         * @return this call
         */
        public Call<T> awaitBlockedIn(String innermost, String... callers) {
            Blocked.awaitBlockedIn(thread, innermost, callers);
            return this;
        }

        /**
         * The operation's result, waiting at most {@link #TIMEOUT} for it.
         *
         * @throws AssertionError if it does not complete in time
         * @throws ExecutionException if it threw
         */
        public T get() throws ExecutionException, InterruptedException {
            return Blocked.get(result);
        }
    }

    /** Starts {@code body} on a new platform thread named {@code name}. */
    public static <T> Call<T> start(String name, Callable<T> body) {
        CompletableFuture<T> result = new CompletableFuture<>();
        Thread t = Thread.ofPlatform().name(name).daemon(true).unstarted(() -> {
            try {
                result.complete(body.call());
            } catch (Throwable e) {
                result.completeExceptionally(e);
            }
        });
        t.start();
        return new Call<>(t, result);
    }

    /** Starts {@code body}, which returns nothing, on a new platform thread named {@code name}. */
    public static Call<Void> run(String name, Action body) {
        return start(name, () -> {
            body.run();
            return null;
        });
    }

    /**
     * Waits at most {@link #TIMEOUT} until {@code thread} is {@link Thread.State#WAITING WAITING},
     * {@link Thread.State#TIMED_WAITING TIMED_WAITING} or {@link Thread.State#BLOCKED BLOCKED} with a stack that,
     * from the innermost frame outwards, holds only JDK frames before {@code innermost} and then {@code callers}
     * in that order (not necessarily adjacent). The stack is sampled before and after the state, and both samples
     * must match, so a thread passing through the place without stopping there does not count.
     *
     * @param innermost the first frame outside the JDK's blocking machinery, or a JDK frame of that machinery
     * @param callers   frames further out that must be on the stack, innermost first
     * @throws AssertionError with the last stack seen if the thread does not block there in time, or ends
     */
    public static void awaitBlockedIn(Thread thread, String innermost, String... callers) {
        List<String> expected = new ArrayList<>();
        expected.add(innermost);
        expected.addAll(Arrays.asList(callers));
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        StackTraceElement[] last = new StackTraceElement[0];
        Thread.State state = thread.getState();
        while (System.nanoTime() - deadline < 0) {
            StackTraceElement[] before = thread.getStackTrace();
            state = thread.getState();
            StackTraceElement[] after = thread.getStackTrace();
            last = after;
            if (state == Thread.State.TERMINATED) {
                break;
            }
            if (isBlocking(state) && matches(before, expected) && matches(after, expected)) {
                return;
            }
            Thread.yield();
        }
        throw new AssertionError("thread " + thread.getName() + " did not block in " + String.join(" <- ", expected)
                + " within " + TIMEOUT + "; last seen " + state + blockerOf(thread) + " at\n" + format(last));
    }

    /**
     * {@code future}'s result, waiting at most {@link #TIMEOUT} for it.
     *
     * @throws AssertionError if it does not complete in time
     * @throws ExecutionException if it completed exceptionally
     */
    public static <T> T get(Future<T> future) throws ExecutionException, InterruptedException {
        try {
            return future.get(TIMEOUT.toNanos(), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            throw new AssertionError("not done within " + TIMEOUT, e);
        }
    }

    private static boolean isBlocking(Thread.State state) {
        return state == Thread.State.WAITING || state == Thread.State.TIMED_WAITING || state == Thread.State.BLOCKED;
    }

    /** Whether {@code stack} shows only JDK frames above {@code expected[0]}, then the rest of it in order. */
    static boolean matches(StackTraceElement[] stack, List<String> expected) {
        int i = 0;
        while (i < stack.length && !is(stack[i], expected.getFirst())) {
            if (!isJdk(stack[i])) {
                return false;
            }
            i++;
        }
        if (i == stack.length) {
            return false;
        }
        for (String caller : expected.subList(1, expected.size())) {
            do {
                i++;
            } while (i < stack.length && !is(stack[i], caller));
            if (i == stack.length) {
                return false;
            }
        }
        return true;
    }

    private static boolean is(StackTraceElement frame, String name) {
        return name.equals(frame.getClassName() + "." + frame.getMethodName());
    }

    private static boolean isJdk(StackTraceElement frame) {
        String c = frame.getClassName();
        return JDK_PREFIXES.stream().anyMatch(c::startsWith);
    }

    private static String blockerOf(Thread thread) {
        Object blocker = LockSupport.getBlocker(thread);
        return blocker == null ? "" : " (parked on " + blocker + ")";
    }

    private static String format(StackTraceElement[] stack) {
        return Arrays.stream(stack).map(f -> "\tat " + f).collect(Collectors.joining("\n"));
    }
}
