package dev.dmaplane.testing;

import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Supplier;
import java.util.stream.Collectors;

/**
 * What the inputs of one fuzz target did, for docs/RELIABILITY.md's figures: how many ran, how each ended (accepted,
 * refused with which errno, left out by the harness's work bound) and how long the slowest took. Anything but an
 * {@link ErrnoException} is a finding and propagates to Jazzer unchanged; it is counted first. The summary goes to
 * standard output and to {@code target/fuzz-runs/<target>.txt}, where {@code ./dmaplane fuzz} reads it.
 *
 * <p>Not thread-safe: Jazzer runs one input at a time on the test's thread.
 */
public final class FuzzRuns {
    /** What a target's body reports for an input it ran to the end. */
    public static final String ACCEPTED = "accepted";

    /** Whether Jazzer fuzzes ({@code JAZZER_FUZZ} set) rather than replays the kept inputs. */
    public static final boolean FUZZING = isFuzzing();

    private final String target;
    private final Duration limit;
    private final Map<String, Long> outcomes = new TreeMap<>();
    private long inputs;
    private long slowestNanos;

    /** The counts of {@code target}, whose every answer must come within {@code limit} while fuzzing. */
    public FuzzRuns(String target, Duration limit) {
        this.target = target;
        this.limit = limit;
    }

    private static boolean isFuzzing() {
        String env = System.getenv("JAZZER_FUZZ");
        return (env != null && !env.isEmpty() && !env.equals("0") && !env.equalsIgnoreCase("false"))
                || Boolean.getBoolean("jazzer.fuzz");
    }

    /** A body that names how its input ended: {@link #ACCEPTED}, or why the harness left the input out. */
    @FunctionalInterface
    public interface Body {
        String run();
    }

    /**
     * Runs one input: counts it, times it, and classifies its end. An {@link ErrnoException} is the defined refusal
     * (counted by its errno, not rethrown); any other throwable is counted as a finding, printed with {@code input}
     * (the machine file, the command line, asked for only then) to standard error, and rethrown. While fuzzing, an answer slower than
     * the limit is a finding too ({@link SlowAnswer}); replaying the kept inputs only reports the slowest, so that a
     * loaded build machine cannot fail the build.
     */
    public void run(Supplier<String> input, Body body) {
        inputs++;
        long start = System.nanoTime();
        String outcome;
        try {
            outcome = body.run();
        } catch (ErrnoException e) {
            outcome = e.errno().name();
        } catch (RuntimeException | Error e) {
            finding(e, input);
            throw e;
        } finally {
            slowestNanos = Math.max(slowestNanos, System.nanoTime() - start);
        }
        long nanos = System.nanoTime() - start;
        if (FUZZING && nanos > limit.toNanos()) {
            SlowAnswer slow = new SlowAnswer(String.format("%s: answered in %.3f s, the limit is %d s (%s)", target,
                    nanos / 1e9, limit.toSeconds(), outcome));
            finding(slow, input);
            throw slow;
        }
        count(outcome);
    }

    private void finding(Throwable e, Supplier<String> input) {
        count("finding " + e.getClass().getSimpleName());
        System.err.println("fuzz " + target + ": finding " + e + " on the input:\n" + input.get());
    }

    /** An input answered, but slower than the target's limit. */
    public static final class SlowAnswer extends AssertionError {
        private static final long serialVersionUID = 1L;

        SlowAnswer(String message) {
            super(message);
        }
    }

    private void count(String outcome) {
        outcomes.merge(outcome, 1L, Long::sum);
    }

    /** Inputs run so far. */
    public long inputs() {
        return inputs;
    }

    /** One line: the target, the number of inputs, each outcome's count, the slowest input. */
    public String summary() {
        return String.format("%s: %d inputs (%s), slowest %.3f s; %s", target, inputs,
                FUZZING ? "fuzzing" : "kept inputs", slowestNanos / 1e9,
                outcomes.entrySet().stream().map(e -> e.getKey() + " " + e.getValue()).collect(Collectors.joining(", ")));
    }

    /** Prints {@link #summary()} and writes it to {@code target/fuzz-runs/<target>.txt} of the module under test. */
    public void report() {
        String line = summary();
        System.out.println("fuzz " + line);
        Figures.write("fuzz-runs", target, line);
    }
}
