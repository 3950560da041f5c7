package dev.dmaplane.runtime.topo;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * The real Graphviz {@code dot} as a process: DOT in, SVG out ({@code dot -Tsvg}), with a bounded wait. Graphviz
 * comes from the operating system's package manager ({@code apt-get install graphviz}); where it is missing the
 * error says so instead of drawing nothing.
 *
 * @param program the {@code dot} executable: a name looked up on the {@code PATH} or a path
 * @param timeout how long {@code dot} may run before it is killed
 */
public record Graphviz(String program, Duration timeout) {
    private static final Logger LOG = LoggerFactory.getLogger(Graphviz.class);
    /** How long {@link #onPath()} lets {@code dot} run. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);

    public Graphviz {
        ErrnoException.check(program != null && !program.isBlank(), Errno.EINVAL, "Graphviz program '" + program + "'");
        ErrnoException.check(timeout != null && !timeout.isNegative() && !timeout.isZero(), Errno.EINVAL,
                "Graphviz timeout " + timeout + " is not positive");
    }

    /** {@code dot} from the {@code PATH}, with {@link #DEFAULT_TIMEOUT}. */
    public static Graphviz onPath() {
        return new Graphviz("dot", DEFAULT_TIMEOUT);
    }

    /**
     * The executable this record names: {@link #program} itself when it contains a path separator, else the first
     * executable of that name in a directory of the {@code PATH}.
     */
    public Optional<Path> find() {
        if (program.contains(File.separator)) {
            Path p = Path.of(program);
            return Files.isExecutable(p) ? Optional.of(p) : Optional.empty();
        }
        String path = System.getenv().getOrDefault("PATH", "");
        return Arrays.stream(path.split(File.pathSeparator)).filter(d -> !d.isEmpty()).map(d -> Path.of(d, program))
                .filter(Files::isExecutable).findFirst();
    }

    /**
     * {@code dot -Tsvg} of {@code dot}.
     *
     * @throws ErrnoException {@code ENOENT} naming the program when it is not installed, {@code ETIMEDOUT} when it
     *                        runs longer than {@link #timeout} (it is killed), {@code EIO} with its standard error
     *                        when it fails or cannot be run, {@code EINTR} when the waiting thread is interrupted
     */
    public String svg(String dot) {
        ErrnoException.check(dot != null, Errno.EINVAL, "no DOT text to render");
        Path exe = find().orElseThrow(() -> new ErrnoException(Errno.ENOENT, "Graphviz '" + program
                + "' is not installed (not on the PATH); install the graphviz package (apt-get install graphviz,"
                + " dnf install graphviz) to render SVG, or write DOT instead"));
        Path dir = null;
        try {
            dir = Files.createTempDirectory("dmaplane-dot-");
            Path in = Files.writeString(dir.resolve("in.dot"), dot, StandardCharsets.UTF_8);
            Path out = dir.resolve("out.svg");
            Path err = dir.resolve("err.txt");
            List<String> command = List.of(exe.toString(), "-Tsvg", "-o" + out, in.toString());
            Process p = new ProcessBuilder(command).redirectError(err.toFile()).redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
                throw new ErrnoException(Errno.ETIMEDOUT, exe + " did not finish within " + timeout + "; killed");
            }
            if (p.exitValue() != 0) {
                throw new ErrnoException(Errno.EIO, exe + " -Tsvg failed with status " + p.exitValue() + ": "
                        + Files.readString(err, StandardCharsets.UTF_8).strip());
            }
            return Files.readString(out, StandardCharsets.UTF_8);
        } catch (IOException e) {
            LOG.error("running {} -Tsvg failed", exe, e);
            throw new ErrnoException(Errno.EIO, "running " + exe + " -Tsvg failed: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "interrupted while " + exe + " -Tsvg ran");
        } finally {
            deleteTree(dir);
        }
    }

    private static void deleteTree(Path dir) {
        if (dir == null) {
            return;
        }
        try (var files = Files.list(dir)) {
            for (Path f : files.toList()) {
                Files.deleteIfExists(f);
            }
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            LOG.warn("could not remove the temporary directory {}", dir, e);
        }
    }
}
