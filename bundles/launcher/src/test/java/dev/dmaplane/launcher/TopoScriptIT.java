package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@code ./dmaplane topo --svg} renders with Graphviz's {@code dot}, which the script installs through the operating
 * system's package manager when it is missing, as {@code .ci/run} does (issue 16: "installed through the operating
 * system's package manager by the script that needs it"). The script runs with a PATH of stand-ins only: no
 * {@code dot}, and an {@code apt-get} that records what it was asked; what follows the install (finding a JDK) is not
 * this test's business.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TopoScriptIT {
    private static final Path SCRIPT = Path.of("..", "..", "dmaplane").toAbsolutePath().normalize();

    @TempDir
    Path tmp;

    @Test
    void topoSvgWithoutDotInstallsGraphvizThroughAptGet() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "the script installs packages only as root");
        String err = topo(false, "topo", "--svg", tmp.resolve("m.svg").toString(), "--no-such-option");
        assertEquals("update\ninstall -y graphviz\n", calls(), err);
        assertTrue(err.contains("dmaplane: topo --svg needs Graphviz's dot: apt-get install -y graphviz"), err);
    }

    @Test
    void withDotOrWithoutSvgNothingIsInstalled() throws Exception {
        topo(true, "topo", "--svg", tmp.resolve("m.svg").toString(), "--no-such-option");
        topo(false, "topo", "--dot", tmp.resolve("m.dot").toString(), "--no-such-option");
        topo(false, "topo", "--svg", "x.svg", "--help");
        assertEquals("", calls());
    }

    private String calls() throws IOException {
        Path f = tmp.resolve("apt-get.calls");
        return Files.exists(f) ? Files.readString(f, StandardCharsets.UTF_8) : "";
    }

    /** Runs the script with {@code args} on a PATH of stand-ins ({@code dot} among them when {@code withDot}). */
    private String topo(boolean withDot, String... args) throws IOException, InterruptedException {
        Path bin = Files.createDirectories(tmp.resolve(withDot ? "bin-dot" : "bin"));
        stub(bin.resolve("apt-get"), "echo \"$*\" >> '" + tmp.resolve("apt-get.calls") + "'\n");
        if (withDot) {
            stub(bin.resolve("dot"), "exit 0\n");
        }
        if (!Files.exists(bin.resolve("dirname"))) {
            Files.createSymbolicLink(bin.resolve("dirname"), Path.of("/usr/bin/dirname"));
        }
        String[] cmd = new String[args.length + 2];
        cmd[0] = "/bin/bash";
        cmd[1] = SCRIPT.toString();
        System.arraycopy(args, 0, cmd, 2, args.length);
        Path err = tmp.resolve("err");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(tmp.resolve("out").toFile())
                .redirectError(err.toFile()).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().put("PATH", bin.toString());
        Process p = pb.start();
        assertTrue(p.waitFor(90, TimeUnit.SECONDS), "the script ended");
        return Files.readString(err, StandardCharsets.UTF_8);
    }

    private static void stub(Path f, String body) throws IOException {
        Files.writeString(f, "#!/bin/bash\n" + body);
        Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rwxr-xr-x"));
    }
}
