package dev.dmaplane.runtime.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.runtime.topo.Graphviz;
import dev.dmaplane.runtime.topo.TopologyDot;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.InvalidPathException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * {@code dmaplane:topo [--dot|--svg] [FILE]}: the machine's picture ({@link TopologyDot}) as DOT, or as SVG through
 * the real Graphviz {@code dot}, printed or written to FILE.
 */
final class TopoView {
    private static final Logger LOG = LoggerFactory.getLogger(TopoView.class);
    static final String USAGE = "dmaplane:topo [--dot | --svg] [FILE]";

    private TopoView() {
    }

    /**
     * Renders and prints, or writes FILE (resolved against {@code workDir}); nothing is written unless the rendering
     * succeeded.
     *
     * @throws ErrnoException {@code EINVAL} for an unknown option, two formats or two files (naming it), the errno
     *                        of {@link Graphviz#svg} for SVG, {@code EIO} naming FILE when it cannot be written
     */
    static String run(Machine machine, Graphviz graphviz, Path workDir, List<String> args) {
        boolean svg = false;
        String format = null;
        String file = null;
        for (String a : args) {
            if (a.equals("--dot") || a.equals("--svg")) {
                if (format != null) {
                    throw usage("option '" + a + "' after '" + format + "'");
                }
                format = a;
                svg = a.equals("--svg");
            } else if (a.startsWith("-") || a.isEmpty()) {
                throw usage("option '" + a + "'");
            } else if (file != null) {
                throw usage("second file '" + a + "' after '" + file + "'");
            } else {
                file = a;
            }
        }
        Path target = file == null ? null : path(workDir, file);
        String dot = TopologyDot.render(machine);
        String out = svg ? graphviz.svg(dot) : dot;
        if (target == null) {
            return out.stripTrailing();
        }
        try {
            Files.writeString(target, out, StandardCharsets.UTF_8);
        } catch (IOException e) {
            LOG.warn("dmaplane:topo could not write {}", target, e);
            throw new ErrnoException(Errno.EIO, "dmaplane:topo: cannot write '" + file + "': " + e, e);
        }
        return "dmaplane:topo: wrote the topology as " + (svg ? "SVG" : "DOT") + " (" + out.length() + " characters) to "
                + target;
    }

    private static Path path(Path workDir, String file) {
        try {
            return workDir.resolve(file);
        } catch (InvalidPathException e) {
            throw usage("file name '" + file + "' (" + e.getReason() + ")");
        }
    }

    private static ErrnoException usage(String bad) {
        return new ErrnoException(Errno.EINVAL, "dmaplane:topo: bad " + bad + "; usage: " + USAGE);
    }
}
