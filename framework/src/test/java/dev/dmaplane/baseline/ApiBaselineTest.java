package dev.dmaplane.baseline;

import aQute.bnd.differ.Baseline;
import aQute.bnd.differ.Baseline.Info;
import aQute.bnd.differ.DiffPluginImpl;
import aQute.bnd.header.Parameters;
import aQute.bnd.osgi.Constants;
import aQute.bnd.osgi.Domain;
import aQute.bnd.osgi.FileResource;
import aQute.bnd.osgi.Jar;
import aQute.bnd.osgi.Processor;
import aQute.bnd.version.Version;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.jar.Manifest;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The check {@code bnd-baseline-maven-plugin} runs in {@code verify}, done here with the same bnd {@link Baseline}
 * API on the recorded baseline bundle ({@code bundles/baseline/repository}, CONTRIBUTING.md): follows the OSGi Semantic
 * Versioning whitepaper and bnd's baselining ({@code -baseline} in the bnd manual). An exported interface that
 * gains a method without a package version bump fails; {@code @ProviderType} makes it a minor change,
 * {@code @ConsumerType} a major one.
 */
class ApiBaselineTest {
    private static final Path CLASSES = Path.of("target", "classes");
    private static final Path SOURCES = Path.of("src", "main", "java");

    @TempDir
    Path tmp;

    @Test
    void todaysBuildMatchesTheRecordedBaseline() throws Exception {
        try (Jar older = recorded(); Jar newer = new Jar(CLASSES.toFile())) {
            Map<String, Info> infos = baseline(newer, older);
            assertFalse(infos.isEmpty(), "the framework exports packages");
            List<String> mismatches = infos.values().stream().filter(i -> i.mismatch)
                    .map(i -> i.packageName + " " + i.packageDiff.getDelta()).toList();
            assertEquals(List.of(), mismatches, "re-record the baseline only after a release (CONTRIBUTING.md)");
        }
    }

    @Test
    void methodAddedToProviderTypeWithoutBumpFailsWithMinorSuggested() throws Exception {
        try (Jar older = recorded(); Jar newer = withAddedMethod("dev/dmaplane/dma/DmaApi")) {
            // unbumped: the recorded version, whatever this build's @Version of the package says
            exportVersion(newer, "dev.dmaplane.dma", exportedVersion(older, "dev.dmaplane.dma"));
            Info dma = baseline(newer, older).get("dev.dmaplane.dma");
            assertTrue(dma.mismatch, "an unbumped change to dev.dmaplane.dma must fail the baseline");
            assertEquals(dma.olderVersion, dma.newerVersion);
            assertEquals(new Version(dma.olderVersion.getMajor(), dma.olderVersion.getMinor() + 1, 0),
                    dma.suggestedVersion, "@ProviderType DmaApi: a new method is a minor change");
        }
    }

    @Test
    void methodAddedToConsumerTypeWithoutBumpFailsWithMajorSuggested() throws Exception {
        try (Jar older = recorded(); Jar newer = withAddedMethod("dev/dmaplane/device/Driver")) {
            Info device = baseline(newer, older).get("dev.dmaplane.device");
            assertTrue(device.mismatch, "an unbumped change to dev.dmaplane.device must fail the baseline");
            assertEquals(new Version(device.olderVersion.getMajor() + 1, 0, 0), device.suggestedVersion,
                    "@ConsumerType Driver: a new method breaks every driver, a major change");
        }
    }

    @Test
    void methodAddedWithTheSuggestedBumpPasses() throws Exception {
        try (Jar older = recorded(); Jar newer = withAddedMethod("dev/dmaplane/dma/DmaApi")) {
            Version suggested = baseline(newer, older).get("dev.dmaplane.dma").suggestedVersion;
            exportVersion(newer, "dev.dmaplane.dma", suggested);
            Info dma = baseline(newer, older).get("dev.dmaplane.dma");
            assertEquals(suggested, dma.newerVersion);
            assertFalse(dma.mismatch, "a change with its minor bump is accepted");
        }
    }

    private static Jar recorded() throws IOException {
        String path = System.getProperty("dmaplane.baseline.jar");
        assertNotNull(path, "surefire sets dmaplane.baseline.jar to the recorded framework bundle");
        assertTrue(Files.isRegularFile(Path.of(path)), "no recorded baseline bundle " + path);
        return new Jar(Path.of(path).toFile());
    }

    private static Map<String, Info> baseline(Jar newer, Jar older) throws Exception {
        try (Processor reporter = new Processor()) {
            Map<String, Info> infos = new Baseline(reporter, new DiffPluginImpl()).baseline(newer, older, null)
                    .stream().collect(Collectors.toMap(i -> i.packageName, i -> i));
            assertEquals(List.of(), reporter.getErrors(), "bnd reported errors");
            return infos;
        }
    }

    /** This build's classes with {@code type} recompiled from its source plus one abstract method. */
    private Jar withAddedMethod(String type) throws IOException {
        String source = Files.readString(SOURCES.resolve(type + ".java"), StandardCharsets.UTF_8);
        int end = source.lastIndexOf('}');
        Path changed = tmp.resolve("src").resolve(type + ".java");
        Files.createDirectories(changed.getParent());
        Files.writeString(changed, source.substring(0, end) + "    void addedWithoutVersionBump();\n}\n");

        Path out = tmp.resolve("classes");
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        assertNotNull(javac, "the tests run on a JDK");
        ByteArrayOutputStream diagnostics = new ByteArrayOutputStream();
        int rc = javac.run(null, null, new PrintStream(diagnostics, true, StandardCharsets.UTF_8),
                "-proc:none", "-cp", CLASSES + System.getProperty("path.separator")
                        + System.getProperty("java.class.path"), "-d", out.toString(), changed.toString());
        assertEquals(0, rc, diagnostics.toString(StandardCharsets.UTF_8));

        Jar jar = new Jar(CLASSES.toFile());
        try (Stream<Path> classes = Files.walk(out)) {
            for (Path c : classes.filter(p -> p.toString().endsWith(".class")).toList()) {
                jar.putResource(out.relativize(c).toString().replace('\\', '/'), new FileResource(c));
            }
        }
        return jar;
    }

    /** {@code pkg}'s version in the bundle's {@code Export-Package}. */
    private static Version exportedVersion(Jar jar, String pkg) throws Exception {
        return Version.parseVersion(Domain.domain(jar.getManifest()).getExportPackage().get(pkg).get(Constants.VERSION_ATTRIBUTE));
    }

    /** Sets {@code pkg}'s version in the bundle's {@code Export-Package}, as a bumped {@code @Version} would. */
    private static void exportVersion(Jar jar, String pkg, Version version) throws Exception {
        Manifest manifest = jar.getManifest();
        Parameters exports = Domain.domain(manifest).getExportPackage();
        exports.get(pkg).put(Constants.VERSION_ATTRIBUTE, version.toString());
        manifest.getMainAttributes().putValue(Constants.EXPORT_PACKAGE, exports.toString());
        jar.setManifest(manifest);
    }
}
