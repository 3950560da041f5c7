package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Broken jars dropped into {@code deploy/} are reported, one log line each and in {@code dmaplane:deploy}, and the
 * runtime goes on: Felix File Install hands the jars it cannot install as bundles to an {@code ArtifactInstaller}
 * (File Install's documentation, "Custom artifacts"), and a bundle it installed that cannot resolve names the package
 * nobody exports (OSGi Core R8 section 3.6.4 "Import-Package Header", 4.4.7 "Resolving Bundles": an unresolvable
 * mandatory import keeps the bundle INSTALLED). A good driver jar dropped after them still binds.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DeployIT {
    @TempDir
    Path tmp;

    @Test
    void brokenJarsAreReportedAndAGoodDriverStillBinds() throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        PrintStream stdout = System.out;
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        System.setOut(new PrintStream(new Tee(stdout, log), true, UTF_8));
        try (DmaplaneRuntime rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"),
                null, false, 100), RuntimeIT.WAIT)) {
            Path deploy = rt.deployDir();
            drop(deploy, "x.jar", Files.writeString(tmp.resolve("x"), "this is a text file, not a jar\n"));
            drop(deploy, "nomanifest.jar", zipWithoutManifest(tmp.resolve("nomanifest")));
            drop(deploy, "orphan.jar", bundleImporting(tmp.resolve("orphan"), "com.nobody.missing"));
            DemoKit.deploy(RuntimeIT.GPU_DRIVER, deploy);

            assertEquals(List.of(DmaTestDemo.GPU), DemoKit.await("the GPU driver bound", RuntimeIT.WAIT, () -> {
                List<String> b = MachineState.boundTo(rt.status(), DmaTestDemo.GPU_DRIVER_NAME);
                return b.isEmpty() ? Optional.empty() : Optional.of(b);
            }), "the good driver binds beside the broken jars");
            String report = DemoKit.await("dmaplane:deploy names every jar's state", RuntimeIT.WAIT, () -> {
                String s = gogo(rt, "dmaplane:deploy");
                return s.contains("does not resolve") && s.contains("ACTIVE") && s.contains("not a zip")
                        && s.contains("no META-INF/MANIFEST.MF") ? Optional.of(s) : Optional.empty();
            });
            List<String> lines = report.lines().toList();
            assertEquals("deploy directory " + deploy.toAbsolutePath().normalize(), lines.getFirst(), report);
            assertTrue(line(lines, DmaTestDemo.GPU_JAR).matches(" +driver-gpu\\.jar +" + DmaTestDemo.GPU_BSN + " \\S+ \\[\\d+] ACTIVE"),
                    report);
            assertTrue(line(lines, "nomanifest.jar").endsWith("not installed: no META-INF/MANIFEST.MF, so not an OSGi bundle"),
                    report);
            assertTrue(line(lines, "orphan.jar").matches(" +orphan\\.jar +test\\.orphan 1\\.0\\.0 \\[\\d+] does not resolve:"
                    + " imports package com\\.nobody\\.missing, which no bundle exports \\(.*\\)"), report);
            assertTrue(line(lines, "x.jar").matches(" +x\\.jar +not installed: not a zip file \\(.+\\)"), report);

            for (String jar : List.of("x.jar not installed: not a zip file", "nomanifest.jar not installed: no META-INF",
                    "orphan.jar bundle test.orphan 1.0.0 does not resolve: imports package com.nobody.missing")) {
                DemoKit.await("one log line for " + jar, RuntimeIT.WAIT, () ->
                        log.toString(UTF_8).contains("deploy: " + jar) ? Optional.of(true) : Optional.empty());
            }
            String text = log.toString(UTF_8);
            for (String jar : List.of("x.jar", "nomanifest.jar", "orphan.jar")) {
                assertEquals(1, text.lines().filter(l -> l.contains("deploy: " + jar + " ")).count(), text);
            }
        } finally {
            System.setOut(stdout);
        }
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    private static String line(List<String> lines, String jar) {
        return lines.stream().filter(l -> l.strip().startsWith(jar + " ")).findFirst()
                .orElseThrow(() -> new AssertionError("no line for " + jar + " in " + lines));
    }

    private static String gogo(DmaplaneRuntime rt, String command) {
        try {
            return rt.gogo(command, RuntimeIT.WAIT);
        } catch (Exception e) {
            throw new IllegalStateException(command + " failed", e);
        }
    }

    /** Moves a finished file into the deploy directory in one step, so File Install never sees half of it. */
    private static void drop(Path deploy, String name, Path file) throws IOException {
        Files.move(file, deploy.resolve(name), StandardCopyOption.ATOMIC_MOVE);
    }

    private static Path zipWithoutManifest(Path file) throws IOException {
        try (ZipOutputStream zip = new ZipOutputStream(Files.newOutputStream(file))) {
            zip.putNextEntry(new ZipEntry("readme.txt"));
            zip.write("a zip, but no bundle\n".getBytes(UTF_8));
            zip.closeEntry();
        }
        return file;
    }

    private static Path bundleImporting(Path file, String pkg) throws IOException {
        Manifest mf = new Manifest();
        Attributes a = mf.getMainAttributes();
        a.put(Attributes.Name.MANIFEST_VERSION, "1.0");
        a.putValue("Bundle-ManifestVersion", "2");
        a.putValue("Bundle-SymbolicName", "test.orphan");
        a.putValue("Bundle-Version", "1.0.0");
        a.putValue("Import-Package", pkg + ";version=\"[1,2)\"");
        try (JarOutputStream jar = new JarOutputStream(Files.newOutputStream(file), mf)) {
            jar.putNextEntry(new ZipEntry("readme.txt"));
            jar.write("a bundle whose import nobody exports\n".getBytes(UTF_8));
            jar.closeEntry();
        }
        return file;
    }

    /** Writes to the real standard output and to a buffer the test reads the log lines from. */
    private static final class Tee extends OutputStream {
        private final OutputStream first;
        private final ByteArrayOutputStream second;

        Tee(OutputStream first, ByteArrayOutputStream second) {
            this.first = first;
            this.second = second;
        }

        @Override
        public synchronized void write(int b) throws IOException {
            first.write(b);
            second.write(b);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) throws IOException {
            first.write(b, off, len);
            second.write(b, off, len);
        }

        @Override
        public synchronized void flush() throws IOException {
            first.flush();
        }
    }
}
