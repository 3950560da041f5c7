package dev.dmaplane.runtime.impl;

import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.fileinstall.ArtifactInstaller;
import org.apache.felix.service.command.Descriptor;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.BundleEvent;
import org.osgi.framework.BundleListener;
import org.osgi.framework.Constants;
import org.osgi.framework.FrameworkEvent;
import org.osgi.framework.FrameworkListener;
import org.osgi.framework.wiring.BundleRequirement;
import org.osgi.framework.wiring.BundleRevision;
import org.osgi.framework.wiring.FrameworkWiring;
import org.osgi.resource.Namespace;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.jar.Attributes;
import java.util.jar.JarFile;
import java.util.jar.Manifest;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipException;

/**
 * Says why a jar dropped into File Install's {@code deploy/} directory did not become a running bundle, as
 * {@code dmesg} says why a module did not load: one log line per jar and per reason, and the {@code dmaplane:deploy}
 * command listing every jar with its bundle's state or the reason. Jars File Install does not take as bundles (not
 * a zip, no manifest, no {@code Bundle-SymbolicName} or {@code Bundle-Version}) it hands to the installers it
 * tracks, so this is one ({@link ArtifactInstaller}) for exactly those; bundles it installed that cannot resolve
 * are found after each package refresh File Install asks for, by the mandatory requirements nothing provides.
 */
@Component(service = {ArtifactInstaller.class, DeployWatch.class}, property = {
        "osgi.command.scope=dmaplane",
        "osgi.command.function=deploy"})
public final class DeployWatch implements ArtifactInstaller {
    /** The framework property File Install watches. */
    static final String DEPLOY_DIR = "felix.fileinstall.dir";
    private static final Logger LOG = LoggerFactory.getLogger(DeployWatch.class);
    private static final Pattern PACKAGE = Pattern.compile("\\(" + BundleRevision.PACKAGE_NAMESPACE + "=([^)]+)\\)");

    private final BundleContext context;
    private final Path deployDir;
    /** The reason last logged for each jar, so that each is logged once until it changes. */
    private final Map<Path, String> reported = new ConcurrentHashMap<>();
    private final FrameworkListener refreshed = this::frameworkEvent;
    private final BundleListener bundles = this::bundleEvent;

    @Activate
    public DeployWatch(BundleContext context) {
        this.context = context;
        String dir = context.getProperty(DEPLOY_DIR);
        this.deployDir = dir == null || dir.isBlank() ? null : Path.of(dir).toAbsolutePath().normalize();
        context.addFrameworkListener(refreshed);
        context.addBundleListener(bundles);
    }

    @Deactivate
    void deactivate() {
        context.removeBundleListener(bundles);
        context.removeFrameworkListener(refreshed);
    }

    /** Takes the jars of the deploy directory File Install cannot install as bundles. */
    @Override
    public boolean canHandle(File artifact) {
        Path p = artifact.toPath().toAbsolutePath().normalize();
        return deployDir != null && deployDir.equals(p.getParent()) && p.getFileName().toString().endsWith(".jar")
                && notABundle(p).isPresent();
    }

    @Override
    public void install(File artifact) {
        check(artifact.toPath());
    }

    @Override
    public void update(File artifact) {
        check(artifact.toPath());
    }

    @Override
    public void uninstall(File artifact) {
        Path p = artifact.toPath().toAbsolutePath().normalize();
        if (reported.remove(p) != null) {
            LOG.info("deploy: {} removed", p.getFileName());
        }
    }

    private void check(Path jar) {
        notABundle(jar).ifPresent(why -> report(jar, "not installed: " + why));
    }

    /** {@code dmaplane:deploy}: every jar of the deploy directory, with its bundle's state or why it has none. */
    @Descriptor("every jar of the deploy directory with its bundle's state, or why it has none")
    public String deploy() throws IOException {
        if (deployDir == null) {
            return "no deploy directory (" + DEPLOY_DIR + " is not set)";
        }
        List<Path> jars = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(deployDir, "*.jar")) {
            ds.forEach(jars::add);
        }
        jars.sort(null);
        StringBuilder out = new StringBuilder("deploy directory " + deployDir + "\n");
        if (jars.isEmpty()) {
            out.append("  (no jars)\n");
        }
        for (Path jar : jars) {
            out.append(String.format("  %-28s %s%n", jar.getFileName(), state(jar)));
        }
        return out.toString().stripTrailing();
    }

    private String state(Path jar) {
        Optional<String> broken = notABundle(jar);
        if (broken.isPresent()) {
            return "not installed: " + broken.get();
        }
        Optional<Bundle> b = bundleOf(jar);
        if (b.isEmpty()) {
            return "not installed yet";
        }
        String name = b.get().getSymbolicName() + " " + b.get().getVersion() + " [" + b.get().getBundleId() + "]";
        if (b.get().getState() == Bundle.INSTALLED) {
            List<String> missing = missing(b.get());
            return name + (missing.isEmpty() ? " INSTALLED" : " does not resolve: " + String.join("; ", missing));
        }
        return name + " " + stateName(b.get().getState());
    }

    private void frameworkEvent(FrameworkEvent e) {
        if (e.getType() != FrameworkEvent.PACKAGES_REFRESHED || deployDir == null) {
            return;
        }
        // File Install refreshes after each batch it installed, before it starts them: every jar of the batch is in
        for (Bundle b : context.getBundles()) {
            Optional<Path> jar = deployed(b);
            if (jar.isPresent() && b.getState() == Bundle.INSTALLED) {
                List<String> missing = missing(b);
                if (!missing.isEmpty()) {
                    report(jar.get(), "bundle " + b.getSymbolicName() + " " + b.getVersion() + " does not resolve: "
                            + String.join("; ", missing));
                }
            }
        }
    }

    private void bundleEvent(BundleEvent e) {
        if (e.getType() == BundleEvent.RESOLVED || e.getType() == BundleEvent.UNINSTALLED) {
            deployed(e.getBundle()).ifPresent(reported::remove);
        }
    }

    private void report(Path jar, String why) {
        Path p = jar.toAbsolutePath().normalize();
        if (!why.equals(reported.put(p, why))) {
            LOG.warn("deploy: {} {}", p.getFileName(), why);
        }
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "dmaplane", argv);
    }

    /** Why File Install would not take {@code jar} as a bundle, or empty if it would. */
    static Optional<String> notABundle(Path jar) {
        try (JarFile jf = new JarFile(jar.toFile())) {
            Manifest mf = jf.getManifest();
            if (mf == null) {
                return Optional.of("no META-INF/MANIFEST.MF, so not an OSGi bundle");
            }
            Attributes main = mf.getMainAttributes();
            if (main.getValue(Constants.BUNDLE_SYMBOLICNAME) == null) {
                return Optional.of("its manifest has no " + Constants.BUNDLE_SYMBOLICNAME + ", so not an OSGi bundle");
            }
            if (main.getValue(Constants.BUNDLE_VERSION) == null) {
                return Optional.of("its manifest has no " + Constants.BUNDLE_VERSION + " (File Install needs one)");
            }
            return Optional.empty();
        } catch (ZipException e) {
            return Optional.of("not a zip file (" + e.getMessage() + ")");
        } catch (IOException | SecurityException e) {
            return Optional.of("unreadable (" + e + ")");
        }
    }

    /** The mandatory requirements of {@code b} no installed bundle provides, each as a reader would say it. */
    List<String> missing(Bundle b) {
        BundleRevision rev = b.adapt(BundleRevision.class);
        FrameworkWiring wiring = context.getBundle(Constants.SYSTEM_BUNDLE_LOCATION).adapt(FrameworkWiring.class);
        List<String> out = new ArrayList<>();
        if (rev == null || wiring == null) {
            return out;
        }
        for (BundleRequirement r : rev.getDeclaredRequirements(null)) {
            String resolution = r.getDirectives().get(Namespace.REQUIREMENT_RESOLUTION_DIRECTIVE);
            String effective = r.getDirectives().getOrDefault(Namespace.REQUIREMENT_EFFECTIVE_DIRECTIVE,
                    Namespace.EFFECTIVE_RESOLVE);
            if (Namespace.RESOLUTION_OPTIONAL.equals(resolution) || "dynamic".equals(resolution)
                    || !Namespace.EFFECTIVE_RESOLVE.equals(effective) || !wiring.findProviders(r).isEmpty()) {
                continue;
            }
            String filter = r.getDirectives().getOrDefault(Namespace.REQUIREMENT_FILTER_DIRECTIVE, "");
            Matcher pkg = PACKAGE.matcher(filter);
            out.add(BundleRevision.PACKAGE_NAMESPACE.equals(r.getNamespace()) && pkg.find()
                    ? "imports package " + pkg.group(1) + ", which no bundle exports (" + filter + ")"
                    : "requires " + r.getNamespace() + " " + filter + ", which nothing provides");
        }
        return out;
    }

    private Optional<Bundle> bundleOf(Path jar) {
        Path p = jar.toAbsolutePath().normalize();
        for (Bundle b : context.getBundles()) {
            if (deployed(b).filter(p::equals).isPresent()) {
                return Optional.of(b);
            }
        }
        return Optional.empty();
    }

    /** The deploy-directory jar {@code b} was installed from, if it was. */
    private Optional<Path> deployed(Bundle b) {
        String location = b.getLocation();
        if (deployDir == null || location == null || !location.startsWith("file:")) {
            return Optional.empty();
        }
        try {
            Path p = Path.of(URI.create(location)).toAbsolutePath().normalize();
            return deployDir.equals(p.getParent()) ? Optional.of(p) : Optional.empty();
        } catch (IllegalArgumentException e) {
            LOG.debug("bundle {} has a location that is no file path: {}", b.getBundleId(), location, e);
            return Optional.empty();
        }
    }

    private static String stateName(int state) {
        return switch (state) {
            case Bundle.UNINSTALLED -> "UNINSTALLED";
            case Bundle.INSTALLED -> "INSTALLED";
            case Bundle.RESOLVED -> "RESOLVED";
            case Bundle.STARTING -> "STARTING";
            case Bundle.STOPPING -> "STOPPING";
            case Bundle.ACTIVE -> "ACTIVE";
            default -> "state " + state;
        };
    }
}
