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
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code ./dmaplane build} shows its progress: a line per module from Maven's reactor lines
 * ({@code [INFO] Building NAME VERSION [N/M]}, as {@code maven-core}'s {@code ExecutionEventLogger} prints them),
 * everything else into the log, and on a failure the log's end. Maven is a stand-in on the PATH that prints those
 * lines, so the test runs the script's own code in seconds.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class BuildScriptIT {
    private static final Path SCRIPT = Path.of("..", "..", "dmaplane").toAbsolutePath().normalize();

    @TempDir
    Path tmp;

    @Test
    void theBuildPrintsALinePerModuleAndLogsTheRest() throws Exception {
        Result r = build("""
                echo "[INFO] Scanning for projects..."
                echo "[INFO] Building dmaplane parent 0.1.0-SNAPSHOT                                 [1/3]"
                echo "[INFO] Building dmaplane framework 0.1.0-SNAPSHOT                              [2/3]"
                echo "[INFO] Building jar: /somewhere/framework.jar"
                echo "[INFO] Building dmaplane launcher 0.1.0-SNAPSHOT                               [3/3]"
                echo "[INFO] BUILD SUCCESS"
                """, 0);
        assertEquals(0, r.code(), r.err());
        assertEquals(List.of("dmaplane:   [1/3] dmaplane parent", "dmaplane:   [2/3] dmaplane framework",
                "dmaplane:   [3/3] dmaplane launcher"), r.err().lines().filter(l -> l.contains("/3]")).toList(), r.err());
        assertTrue(r.err().lines().toList().getLast().startsWith("dmaplane: built "), r.err());
        assertTrue(r.log().contains("[INFO] Building jar: /somewhere/framework.jar\n[INFO] Building dmaplane launcher"),
                r.log());
    }

    @Test
    void aFailedBuildShowsTheEndOfTheLog() throws Exception {
        Result r = build("""
                echo "[INFO] Building dmaplane framework 0.1.0-SNAPSHOT                              [1/2]"
                echo "[ERROR] COMPILATION ERROR : Foo.java:[3,1] class, interface, enum, or record expected"
                """, 1);
        assertEquals(1, r.code(), r.err());
        assertTrue(r.err().contains("dmaplane:   [1/2] dmaplane framework\n"), r.err());
        assertTrue(r.err().contains("the build failed") && r.err().contains("[ERROR] COMPILATION ERROR"), r.err());
    }

    private record Result(int code, String err, String log) {
    }

    /** {@code ./dmaplane build} with a Maven that runs {@code body} and exits with {@code exit}. */
    private Result build(String body, int exit) throws IOException, InterruptedException {
        Path bin = Files.createDirectories(tmp.resolve("bin"));
        Path mvn = Files.writeString(bin.resolve("mvn"), "#!/usr/bin/env bash\n" + body + "exit " + exit + "\n");
        Files.setPosixFilePermissions(mvn, PosixFilePermissions.fromString("rwxr-xr-x"));
        Path log = tmp.resolve("build.log");
        ProcessBuilder pb = new ProcessBuilder("bash", SCRIPT.toString(), "build").redirectOutput(tmp.resolve("out").toFile())
                .redirectError(tmp.resolve("err").toFile()).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().put("PATH", bin + ":" + System.getenv("PATH"));
        pb.environment().put("DMAPLANE_BUILD_LOG", log.toString());
        Process p = pb.start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the script ended");
        return new Result(p.exitValue(), Files.readString(tmp.resolve("err"), StandardCharsets.UTF_8),
                Files.exists(log) ? Files.readString(log, StandardCharsets.UTF_8) : "");
    }
}
