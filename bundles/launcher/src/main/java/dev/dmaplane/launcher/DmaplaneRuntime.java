package dev.dmaplane.launcher;

import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.BundleException;
import org.osgi.framework.Constants;
import org.osgi.framework.FrameworkEvent;
import org.osgi.framework.FrameworkUtil;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;
import org.osgi.framework.launch.Framework;
import org.osgi.framework.launch.FrameworkFactory;
import org.osgi.framework.namespace.PackageNamespace;
import org.osgi.framework.wiring.BundleWiring;
import org.osgi.framework.wiring.FrameworkWiring;
import org.osgi.util.tracker.ServiceTracker;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Properties;
import java.util.ServiceLoader;
import java.util.function.Function;
import java.util.jar.JarFile;
import java.util.jar.Manifest;
import java.util.stream.Stream;

/**
 * One embedded Apache Felix running the dmaplane runtime bundle set, with File Install watching a
 * {@code deploy/} directory. Used by {@link Main} for every mode and by the integration tests, so what they test
 * is what users run.
 *
 * <p>Class spaces: this class lives on the application class path with Felix and SLF4J. It never sees the
 * framework's types ({@code Machine}, {@code Driver}): it talks to the runtime through the JDK-typed query service
 * ({@code java.util.function.Function} with {@code dmaplane.query=machine}) and to Gogo through reflection.
 */
public final class DmaplaneRuntime implements AutoCloseable {
    /** The Gogo shell bundle (JLine: history, line editing): reads the terminal; installed only in interactive mode. */
    static final String GOGO_SHELL_BSN = "org.apache.felix.gogo.jline";
    /** The JLine package whose exporter's class loader holds JLine's terminal providers. */
    static final String JLINE_TERMINAL_PACKAGE = "org.jline.terminal";
    /** File that marks a directory as a dmaplane work directory, which may be wiped at start. */
    static final String WORK_MARKER = ".dmaplane-work";
    /** Filter of the runtime's query service. */
    static final String QUERY_FILTER = "(&(objectClass=java.util.function.Function)(dmaplane.query=machine))";
    /** The DS component that boots the machine. */
    static final String MACHINE_COMPONENT = "dev.dmaplane.runtime.impl.MachineComponent";
    /** Filter of the runtime's Gogo commands. */
    static final String COMMANDS_FILTER = "(&(osgi.command.scope=dmaplane)(osgi.command.function=*))";
    /** How long start waits for the machine by default. */
    public static final Duration DEFAULT_START_TIMEOUT = Duration.ofSeconds(20);

    /**
     * What to run.
     *
     * @param distDir     the distribution: {@code bundle/} holds the runtime bundle set
     * @param workDir     framework storage, {@code deploy/}; wiped at start
     * @param machineFile machine (topology) file for {@code dmaplane.machine}, or null for the default machine
     * @param interactive whether to install the Gogo shell on the terminal
     * @param pollMillis  File Install's poll interval
     */
    public record Config(Path distDir, Path workDir, Path machineFile, boolean interactive, long pollMillis, String command) {
        public Config {
            Objects.requireNonNull(distDir, "distDir");
            Objects.requireNonNull(workDir, "workDir");
            Objects.requireNonNull(command, "command");
            if (pollMillis <= 0) {
                throw new IllegalArgumentException("poll interval must be > 0 ms, not " + pollMillis);
            }
        }

        public Config(Path distDir, Path workDir, Path machineFile, boolean interactive, long pollMillis) {
            this(distDir, workDir, machineFile, interactive, pollMillis, "dmaplane");
        }

        public Config(Path distDir, Path workDir) {
            this(distDir, workDir, null, false, 200);
        }

        public Config withMachineFile(Path file) {
            return new Config(distDir, workDir, file, interactive, pollMillis, command);
        }

        public Config withInteractive(boolean on) {
            return new Config(distDir, workDir, machineFile, on, pollMillis, command);
        }

        /** Names the command (run, demo, shell) in the work directory's lock, for a second dmaplane's refusal. */
        public Config withCommand(String name) {
            return new Config(distDir, workDir, machineFile, interactive, pollMillis, name);
        }
    }

    private final Config config;
    private final Framework framework;
    private final Path deployDir;
    private final ServiceTracker<Object, Object> query;
    private final WorkDirLock lock;

    private DmaplaneRuntime(Config config, Framework framework, Path deployDir, ServiceTracker<Object, Object> query,
                            WorkDirLock lock) {
        this.config = config;
        this.lock = lock;
        this.framework = framework;
        this.deployDir = deployDir;
        this.query = query;
    }

    /** Builds the framework properties: storage, SLF4J from the class path, File Install, the machine file. */
    static Map<String, String> frameworkProperties(Config config, Path deployDir) {
        Properties versions = versions();
        String slf4j = versions.getProperty("slf4j.version");
        Map<String, String> p = new HashMap<>();
        p.put(Constants.FRAMEWORK_STORAGE, config.workDir().resolve("felix-cache").toString());
        p.put(Constants.FRAMEWORK_STORAGE_CLEAN, Constants.FRAMEWORK_STORAGE_CLEAN_ONFIRSTINIT);
        // SLF4J lives on the class path with its provider and is exported by the system bundle, so bundles import
        // org.slf4j without a ServiceLoader mediator (see README, "Logging").
        p.put(Constants.FRAMEWORK_SYSTEMPACKAGES_EXTRA, String.join(",",
                "org.slf4j;version=" + slf4j,
                "org.slf4j.event;version=" + slf4j,
                "org.slf4j.helpers;version=" + slf4j,
                "org.slf4j.spi;version=" + slf4j));
        // JFR instruments every jdk.jfr.Event subclass (the framework's trace mirror) with calls into
        // jdk.jfr.internal.event, which no bundle imports: delegating that one package to the boot layer lets the
        // instrumented class link, as it does on a plain class path, so a flight recording can run with the runtime.
        p.put(Constants.FRAMEWORK_BOOTDELEGATION, "jdk.jfr.internal.event");
        // Resolve in the calling thread: Felix's resolver pool would outlive a stopped framework by its 60 s idle
        // timeout, and a few dozen bundles gain nothing from parallel resolution.
        p.put("felix.resolver.parallelism", "1");
        p.put("felix.fileinstall.dir", deployDir.toString());
        p.put("felix.fileinstall.poll", Long.toString(config.pollMillis()));
        p.put("felix.fileinstall.noInitialDelay", "true");
        p.put("felix.fileinstall.bundles.new.start", "true");
        p.put("felix.fileinstall.tmpdir", config.workDir().resolve("fileinstall-tmp").toString());
        p.put("felix.fileinstall.log.level", "2");
        if (config.machineFile() != null) {
            p.put("dmaplane.machine", config.machineFile().toAbsolutePath().toString());
        }
        return p;
    }

    /** The versions Maven wrote into the launcher (SLF4J, Felix, dmaplane). */
    static Properties versions() {
        Properties props = new Properties();
        try (InputStream in = DmaplaneRuntime.class.getResourceAsStream("/dmaplane-launcher.properties")) {
            if (in == null) {
                throw new IllegalStateException("dmaplane-launcher.properties missing from the launcher jar");
            }
            props.load(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return props;
    }

    /**
     * Takes the work directory's lock, wipes the directory, starts Felix with the runtime bundle set and waits until
     * the machine is up; {@link #stop} gives the directory up.
     *
     * @throws IllegalStateException if another runtime holds the work directory, it is not one of ours, a bundle
     *                               does not start or the machine does not come up within {@code timeout}; a
     *                               {@link MachineFileCheck.BadMachineFile} if the machine file is refused
     */
    public static DmaplaneRuntime start(Config config, Duration timeout) throws Exception {
        Path bundleDir = config.distDir().resolve("bundle");
        if (!Files.isDirectory(bundleDir)) {
            throw new IllegalStateException("no runtime bundles: " + bundleDir + " is not a directory (build with mvn install)");
        }
        if (config.machineFile() != null) {
            MachineFileCheck.check(bundleDir, config.machineFile()); // before the work directory is touched
        }
        WorkDirLock lock = WorkDirLock.acquire(config.workDir(), config.command());
        try {
            return start(config, timeout, bundleDir, lock);
        } catch (Exception | Error e) {
            lock.close();
            throw e;
        }
    }

    private static DmaplaneRuntime start(Config config, Duration timeout, Path bundleDir, WorkDirLock lock) throws Exception {
        prepareWorkDir(config.workDir());
        Path deploy = Files.createDirectories(config.workDir().resolve("deploy"));

        FrameworkFactory factory = ServiceLoader.load(FrameworkFactory.class, DmaplaneRuntime.class.getClassLoader())
                .findFirst().orElseThrow(() -> new IllegalStateException("no OSGi FrameworkFactory on the class path"));
        Framework fw = factory.newFramework(frameworkProperties(config, deploy));
        fw.init();
        ServiceTracker<Object, Object> tracker = null;
        try {
            BundleContext ctx = fw.getBundleContext();
            List<Bundle> installed = new ArrayList<>();
            Bundle shell = null;
            for (Path jar : bundleJars(bundleDir)) {
                if (GOGO_SHELL_BSN.equals(symbolicName(jar))) {
                    // The shell reads the terminal and stops the framework at end of input: only when interactive,
                    // and started once the machine and its commands are there.
                    if (config.interactive()) {
                        shell = ctx.installBundle(jar.toUri().toString());
                    }
                    continue;
                }
                installed.add(ctx.installBundle(jar.toUri().toString()));
            }
            for (Bundle b : installed) {
                start(b);
            }
            tracker = new ServiceTracker<>(ctx, FrameworkUtil.createFilter(QUERY_FILTER), null);
            tracker.open();
            ServiceTracker<Object, Object> commands = new ServiceTracker<>(ctx, FrameworkUtil.createFilter(COMMANDS_FILTER), null);
            commands.open();
            try {
                fw.start();
                long deadline = System.nanoTime() + timeout.toNanos();
                while (tracker.getService() == null || commands.getService() == null) {
                    Optional<String> failure = ScrDiagnostics.failedActivation(ctx, MACHINE_COMPONENT);
                    if (failure.isPresent()) {
                        throw new IllegalStateException("the machine did not boot: " + failure.get());
                    }
                    if (System.nanoTime() - deadline >= 0) {
                        throw new IllegalStateException("the machine did not come up within " + timeout.toSeconds()
                                + " s (no dmaplane query or command service); see the log above");
                    }
                    tracker.waitForService(50); // returns as soon as the machine is there
                }
            } finally {
                commands.close();
            }
            if (shell != null) {
                startShell(fw, shell);
            }
            return new DmaplaneRuntime(config, fw, deploy, tracker, lock);
        } catch (Exception | Error e) {
            if (tracker != null) {
                tracker.close();
            }
            stopQuietly(fw, Duration.ofSeconds(10));
            throw e;
        }
    }

    private static void start(Bundle b) {
        if (b.getHeaders().get(Constants.FRAGMENT_HOST) != null) {
            return;
        }
        try {
            b.start();
        } catch (BundleException e) {
            throw new IllegalStateException("bundle " + b.getSymbolicName() + " (" + b.getLocation()
                    + ") does not start: " + e.getMessage(), e);
        }
    }

    /**
     * Starts Gogo's JLine shell with the class loader of the JLine bundle it is wired to as the thread's context class
     * loader. JLine 3 finds its terminal providers (ffm, jni, exec) as resources of the context class loader
     * ({@code TerminalProvider.load}); the launcher's is the application class loader, which has no JLine, and
     * JLine then falls back to a dumb terminal: no raw mode, no key bindings, so no history or line editing. The
     * shell's activator builds its terminal inside {@code start}, once the Gogo {@code CommandProcessor} it tracks is
     * there (it is: the runtime bundles started first).
     */
    static void startShell(Framework fw, Bundle shell) {
        if (!fw.adapt(FrameworkWiring.class).resolveBundles(List.of(shell))) {
            throw new IllegalStateException("bundle " + shell.getSymbolicName() + " (" + shell.getLocation()
                    + ") does not resolve");
        }
        ClassLoader jline = shell.adapt(BundleWiring.class).getRequiredWires(PackageNamespace.PACKAGE_NAMESPACE).stream()
                .filter(w -> JLINE_TERMINAL_PACKAGE.equals(w.getCapability().getAttributes().get(PackageNamespace.PACKAGE_NAMESPACE)))
                .findFirst()
                .map(w -> w.getProviderWiring().getClassLoader())
                .orElseThrow(() -> new IllegalStateException("bundle " + shell.getSymbolicName() + " is not wired to "
                        + JLINE_TERMINAL_PACKAGE));
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(jline);
        try {
            start(shell);
        } finally {
            thread.setContextClassLoader(previous);
        }
    }

    private static List<Path> bundleJars(Path dir) throws IOException {
        List<Path> jars = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.jar")) {
            ds.forEach(jars::add);
        }
        jars.sort(Comparator.comparing(Path::toString));
        if (jars.isEmpty()) {
            throw new IllegalStateException("no bundles in " + dir);
        }
        return jars;
    }

    /** The {@code Bundle-SymbolicName} of a jar, without directives; null for a plain jar. */
    static String symbolicName(Path jar) throws IOException {
        try (JarFile jf = new JarFile(jar.toFile())) {
            Manifest mf = jf.getManifest();
            String bsn = mf == null ? null : mf.getMainAttributes().getValue(Constants.BUNDLE_SYMBOLICNAME);
            return bsn == null ? null : bsn.split(";", 2)[0].trim();
        }
    }

    /**
     * Empties {@code work} for a fresh run. A directory that exists, is not empty and carries no
     * {@value #WORK_MARKER} file is refused rather than wiped: {@code --work} may name the wrong place.
     */
    static void prepareWorkDir(Path work) throws IOException {
        if (Files.exists(work)) {
            if (!Files.isDirectory(work)) {
                throw new IllegalStateException("work directory " + work + " is a file");
            }
            boolean empty;
            try (Stream<Path> s = Files.list(work)) {
                empty = s.findAny().isEmpty();
            }
            if (!empty && !Files.exists(work.resolve(WORK_MARKER))) {
                throw new IllegalStateException("refusing to wipe " + work.toAbsolutePath()
                        + ": not empty and not a dmaplane work directory (no " + WORK_MARKER + ")");
            }
            try (Stream<Path> s = Files.walk(work)) {
                for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                    if (!p.equals(work)) {
                        Files.delete(p);
                    }
                }
            }
        }
        Files.createDirectories(work);
        Files.writeString(work.resolve(WORK_MARKER), "dmaplane work directory: wiped at every start\n");
    }

    public Framework framework() {
        return framework;
    }

    public Config config() {
        return config;
    }

    /** The directory File Install watches. */
    public Path deployDir() {
        return deployDir;
    }

    /** Asks the runtime's query service ({@code status}, {@code pinnedFrames}, {@code trace}, {@code iommu}, {@code dmaDebug}). */
    @SuppressWarnings("unchecked")
    public Object query(String what) {
        Object svc = query.getService();
        if (svc == null) {
            throw new IllegalStateException("the machine is gone (no dmaplane.query service)");
        }
        return ((Function<String, Object>) svc).apply(what);
    }

    /** The machine's state: memory counters, devices, drivers; see the runtime's {@code MachineQuery}. */
    @SuppressWarnings("unchecked")
    public Map<String, Object> status() {
        return (Map<String, Object>) query("status");
    }

    /** Frames with a pin count (walks all of RAM). */
    public long pinnedFrames() {
        return (Long) query("pinnedFrames");
    }

    /** The latest trace events, as maps with {@code seq, kind, device, address, length, detail}. */
    @SuppressWarnings("unchecked")
    public List<Map<String, Object>> trace() {
        return (List<Map<String, Object>>) query("trace");
    }

    /** The IOMMU: groups, domains, faults; see the runtime's {@code MachineQuery}. */
    @SuppressWarnings("unchecked")
    public Map<String, Object> iommu() {
        return (Map<String, Object>) query("iommu");
    }

    /** dma-debug: active mappings and reports; see the runtime's {@code MachineQuery}. */
    @SuppressWarnings("unchecked")
    public Map<String, Object> dmaDebug() {
        return (Map<String, Object>) query("dmaDebug");
    }

    /**
     * The properties of every service matching {@code filter}, whatever its class: the launcher cannot load the
     * classes of services bundles register, but it can read their properties (JDK types).
     */
    public List<Map<String, Object>> serviceProperties(String filter) throws InvalidSyntaxException {
        ServiceReference<?>[] refs = framework.getBundleContext().getAllServiceReferences(null, filter);
        List<Map<String, Object>> all = new ArrayList<>();
        if (refs != null) {
            for (ServiceReference<?> ref : refs) {
                Map<String, Object> props = new HashMap<>();
                for (String key : ref.getPropertyKeys()) {
                    props.put(key, ref.getProperty(key));
                }
                all.add(props);
            }
        }
        return all;
    }

    /** The installed bundle with symbolic name {@code bsn}, if any. */
    public Optional<Bundle> bundle(String bsn) {
        for (Bundle b : framework.getBundleContext().getBundles()) {
            if (bsn.equals(b.getSymbolicName())) {
                return Optional.of(b);
            }
        }
        return Optional.empty();
    }

    /** Runs one Gogo command line and returns what it printed and returned. */
    public String gogo(String commandLine, Duration timeout) throws Exception {
        return Gogo.execute(framework.getBundleContext(), commandLine, timeout);
    }

    /** Whether a service matching {@code filter} is registered. */
    public boolean hasService(String filter) throws InvalidSyntaxException {
        ServiceReference<?>[] refs = framework.getBundleContext().getAllServiceReferences(null, filter);
        return refs != null && refs.length > 0;
    }

    /**
     * Stops the framework (every bundle stops, drivers unbind) and waits up to {@code timeout}.
     *
     * @return whether it stopped in time
     */
    public boolean stop(Duration timeout) throws InterruptedException {
        try {
            query.close();
        } catch (IllegalStateException e) {
            // the framework stopped already (e.g. the shell ended it): its context is gone with it
        }
        boolean stopped = stopFramework(framework, timeout);
        if (stopped) {
            try {
                lock.close();
            } catch (IOException e) {
                throw new UncheckedIOException("giving up the work directory's lock " + WorkDirLock.lockFile(config.workDir()), e);
            }
        }
        return stopped;
    }

    @Override
    public void close() throws InterruptedException {
        if (!stop(Duration.ofSeconds(30))) {
            throw new IllegalStateException("the framework did not stop within 30 s");
        }
    }

    static boolean stopFramework(Framework fw, Duration timeout) throws InterruptedException {
        if ((fw.getState() & (Bundle.STARTING | Bundle.ACTIVE | Bundle.STOPPING)) != 0) {
            try {
                fw.stop();
            } catch (BundleException e) {
                throw new IllegalStateException("stopping the framework failed", e);
            }
        }
        FrameworkEvent ev = fw.waitForStop(timeout.toMillis());
        return ev.getType() != FrameworkEvent.WAIT_TIMEDOUT;
    }

    private static void stopQuietly(Framework fw, Duration timeout) {
        try {
            stopFramework(fw, timeout);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            // already failing; the original error is what matters
        }
    }
}
