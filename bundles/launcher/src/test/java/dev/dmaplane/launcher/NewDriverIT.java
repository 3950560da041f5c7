package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The driver kit as a new user meets it: {@code dmaplane new-driver acme} writes a project, and that project builds
 * with Maven and its tests pass, against the dmaplane artifacts of this build (put in a local repository of its
 * own, as {@code ./dmaplane build} installs them) and the third-party artifacts this build already has.
 */
class NewDriverIT {
    static final Path ROOT = Path.of(System.getProperty("dmaplane.root", "../.."));
    static final String VERSION = System.getProperty("dmaplane.version", "0.1.0-SNAPSHOT");
    static final String ACCEL = "0000:01:00.0";

    @TempDir
    Path tmp;

    @Test
    void badNamesAreRefusedWithTheValueNamed() throws Exception {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8);
        PrintStream out = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        assertEquals(2, Main.run(new String[]{"new-driver", "Bad-Name", "--dir", tmp.toString()}, out, e));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("'Bad-Name'"), err.toString(StandardCharsets.UTF_8));
        assertEquals(2, Main.run(new String[]{"new-driver", "gpu", "--dir", tmp.toString()}, out, e));
        assertEquals(2, Main.run(new String[]{"new-driver", "copyengine", "--dir", tmp.toString()}, out, e),
                "the framework ships the copyengine model");
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("'copyengine' is taken"), err.toString(StandardCharsets.UTF_8));
        assertEquals(2, Main.run(new String[]{"new-driver", "acme", "--package", "Com.Acme", "--dir", tmp.toString()}, out, e));
        assertEquals(2, Main.run(new String[]{"new-driver"}, out, e));
        assertEquals(0, Main.run(new String[]{"new-driver", "acme", "--dir", tmp.toString()}, out, e));
        assertEquals(2, Main.run(new String[]{"new-driver", "acme", "--dir", tmp.toString()}, out, e), "exists");
        try (Stream<Path> files = Files.list(tmp)) {
            assertEquals(List.of(tmp.resolve("acme")), files.toList(), "refusals wrote nothing");
        }
    }

    @Test
    @Timeout(value = 8, unit = TimeUnit.MINUTES)
    void theGeneratedProjectBuildsAndItsTestsPass() throws Exception {
        Path project = NewDriver.generate("acme", "com.example.acme", tmp, VERSION);
        Path repo = tmp.resolve("repo");
        install(ROOT.resolve("pom.xml"), null, repo, "dmaplane-parent");
        install(ROOT.resolve("framework/pom.xml"), ROOT.resolve("framework/target/framework-" + VERSION + ".jar"),
                repo, "framework");
        Path settings = tmp.resolve("settings.xml");
        Files.writeString(settings, """
                <settings>
                  <localRepository>%s</localRepository>
                  <offline>true</offline>
                  <mirrors>
                    <mirror>
                      <!-- everything else from the repository this build already filled -->
                      <id>this-build</id>
                      <mirrorOf>*</mirrorOf>
                      <url>%s</url>
                    </mirror>
                  </mirrors>
                </settings>
                """.formatted(repo, Path.of(System.getProperty("dmaplane.m2")).toUri()));
        Path log = tmp.resolve("build.log");
        Process p = new ProcessBuilder(maven(), "-B", "-s", settings.toString(), "-Daether.offline.protocols=file",
                "verify")
                .directory(project.toFile()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        boolean done = p.waitFor(7, TimeUnit.MINUTES);
        if (!done) {
            p.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
        }
        String output = Files.readString(log);
        assertTrue(done, "the build finished in time");
        assertEquals(0, p.exitValue(), "the generated project builds:\n" + tail(output));
        assertTrue(testsPassed(project.resolve("model"), "com.example.acme.model.AcmeModelTest") >= 3, tail(output));
        assertTrue(testsPassed(project.resolve("driver"), "com.example.acme.driver.AcmeDriverTest") >= 1, tail(output));
        Path model = project.resolve("model/target/acme-model-0.1.0-SNAPSHOT.jar");
        Path driver = project.resolve("driver/target/acme-driver-0.1.0-SNAPSHOT.jar");
        assertTrue(Files.isRegularFile(model) && Files.isRegularFile(driver));

        bindInTheRunningRuntime(project.resolve("acme.yaml"), model, driver);
    }

    /**
     * The generated bundles in a real Felix booted on the generated machine file: the slot is absent until the
     * model bundle arrives, the driver binds and its Gogo command moves real bytes, and the model leaving is a
     * surprise removal that leaves nothing mapped.
     */
    private void bindInTheRunningRuntime(Path machineFile, Path model, Path driver) throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        DmaplaneRuntime rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"),
                machineFile, false, 100), RuntimeIT.WAIT);
        try {
            assertTrue(rt.gogo("dmaplane:lspci", RuntimeIT.WAIT).contains(
                    "<absent> " + ACCEL + " (device model 'acme' is not loaded)"));
            Path deployedDriver = DemoKit.deploy(driver, rt.deployDir());
            Path deployedModel = DemoKit.deploy(model, rt.deployDir());
            DemoKit.await("acme bound", RuntimeIT.WAIT, () -> MachineState.boundTo(rt.status(), "acme").equals(List.of(ACCEL))
                    ? Optional.of(true) : Optional.empty());
            assertTrue(rt.bundle("com.example.acme.model").isPresent() && rt.bundle("com.example.acme.driver").isPresent(),
                    "bundle symbolic names are the packages'");
            assertEquals(ACCEL + ": 65536 bytes XORed with 0x5a by the device, 0 wrong; 1 interrupts",
                    RuntimeIT.gogoOnceKnown(rt, "acme:xor 65536 90"));
            assertTrue(rt.gogo("dmaplane:interrupts", RuntimeIT.WAIT).contains("acme"));

            Files.delete(deployedModel);
            DemoKit.await("acme hardware gone", RuntimeIT.WAIT, () -> !MachineState.deviceNames(rt.status()).contains(ACCEL)
                    ? Optional.of(true) : Optional.empty());
            assertEquals(0, rt.status().get("activeDmaMappings"), "the surprise removal reclaimed everything");
            assertTrue(rt.gogo("dmaplane:lspci", RuntimeIT.WAIT).contains("<absent> " + ACCEL + " (device model 'acme'"));
            assertEquals("no acme device is bound", rt.gogo("acme:xor 16 1", RuntimeIT.WAIT), "the driver stays");
            Files.delete(deployedDriver);
        } finally {
            assertTrue(rt.stop(RuntimeIT.WAIT), "framework stopped in time");
        }
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    /** Puts {@code pom} (and {@code jar}) into {@code repo} as {@code mvn install} would. */
    private static void install(Path pom, Path jar, Path repo, String artifactId) throws IOException {
        Path dir = repo.resolve("dev/dmaplane").resolve(artifactId).resolve(VERSION);
        Files.createDirectories(dir);
        Files.copy(pom, dir.resolve(artifactId + "-" + VERSION + ".pom"), StandardCopyOption.REPLACE_EXISTING);
        if (jar != null) {
            assertTrue(Files.isRegularFile(jar), jar + " is built before the launcher's integration tests");
            Files.copy(jar, dir.resolve(artifactId + "-" + VERSION + ".jar"), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Tests of {@code testClass} that ran in {@code module}, from its surefire report; -1 if any failed. */
    private static int testsPassed(Path module, String testClass) throws IOException {
        String xml = Files.readString(module.resolve("target/surefire-reports/TEST-" + testClass + ".xml"));
        Matcher m = Pattern.compile("<testsuite [^>]*tests=\"(\\d+)\" errors=\"(\\d+)\" skipped=\"(\\d+)\" failures=\"(\\d+)\"")
                .matcher(xml);
        if (!m.find()) {
            return -1;
        }
        boolean clean = m.group(2).equals("0") && m.group(3).equals("0") && m.group(4).equals("0");
        return clean ? Integer.parseInt(m.group(1)) : -1;
    }

    private static String maven() {
        String home = System.getProperty("dmaplane.maven");
        return home == null ? "mvn" : Path.of(home, "bin", "mvn").toString();
    }

    private static String tail(String s) {
        return s.length() <= 6000 ? s : s.substring(s.length() - 6000);
    }
}
