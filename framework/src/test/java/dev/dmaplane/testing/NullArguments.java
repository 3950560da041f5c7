package dev.dmaplane.testing;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Devres;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Acs;
import dev.dmaplane.pci.Bdf;
import dev.dmaplane.pci.MachineSpec;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.resource.DeviceResources;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.trace.Tracer;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Parameter;
import java.lang.reflect.Proxy;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Issue 15's rule checked by reflection: every public constructor, public static method and (for the types given a
 * receiver) public instance method of an exported package answers a null reference argument with
 * {@code ErrnoException(EINVAL)}, never a {@link NullPointerException}. An entry point is tried only where a call with
 * sample arguments succeeds first (so the null is the one thing that differs), and then once per reference parameter
 * with that parameter null. Parameters documented as taking null are {@linkplain #nullable named}.
 */
public final class NullArguments {
    /** Creates a sample value; what it opens it hands to {@link Scope#closeLater}. */
    @FunctionalInterface
    public interface Sample<T> {
        T make(Scope scope) throws Exception;
    }

    /** The resources one call opened, closed last first after the call, and the values its arguments share. */
    public static final class Scope implements AutoCloseable {
        private final Deque<AutoCloseable> open = new ArrayDeque<>();
        private final Map<Class<?>, Object> shared = new HashMap<>();

        /** The one {@code type} of this call, made by {@code sample} on first use (receiver and arguments agree). */
        public <T> T shared(Class<T> type, Sample<? extends T> sample) throws Exception {
            Object v = shared.get(type);
            if (v == null) {
                v = sample.make(this);
                shared.put(type, v);
            }
            return type.cast(v);
        }

        public <T extends AutoCloseable> T closeLater(T resource) {
            open.push(resource);
            return resource;
        }

        @Override
        public void close() throws Exception {
            Exception first = null;
            while (!open.isEmpty()) {
                try {
                    open.pop().close();
                } catch (Exception e) {
                    if (first == null) {
                        first = e;
                    } else {
                        first.addSuppressed(e);
                    }
                }
            }
            if (first != null) {
                throw first;
            }
        }
    }

    /** What the sweep found: the cases tried, the entry points left out, and every answer other than EINVAL. */
    public record Report(int cases, List<String> skipped, List<String> violations) {
    }

    private final Map<Class<?>, Sample<?>> samples = new HashMap<>();
    private final Map<Class<?>, Sample<?>> receivers = new HashMap<>();
    private final Set<String> nullable = new HashSet<>();
    private final Set<String> excluded = new HashSet<>();

    public NullArguments() {
        sample(String.class, s -> "sample");
        sample(Optional.class, s -> Optional.empty());
        sample(List.class, s -> List.of());
        sample(Map.class, s -> Map.of());
        sample(Set.class, s -> Set.of());
    }

    /**
     * A checker with samples of the framework's core objects: a default machine booted on first use in each call (and
     * closed after it) gives the topology, function, device and IOMMU arguments, and is the receiver of the instance
     * methods of the objects a driver is handed ({@link Machine}, {@link PciTopology}, {@link DeviceCore},
     * {@link Iommu}, {@link IommuGroup}, {@link Devres}, plus fresh {@link Tracer} and {@link DeviceResources}).
     */
    public static NullArguments withFrameworkSamples() {
        return new NullArguments()
                .sample(Object.class, s -> new Object())
                .sample(Collection.class, s -> List.of())
                .sample(Iterable.class, s -> List.of())
                .sample(Throwable.class, s -> new IllegalStateException("sample cause"))
                .sample(Tracer.class, s -> new Tracer())
                .sample(HostMemory.class, s -> s.closeLater(new HostMemory(MachineSpec.MEMORY_GRANULE)))
                .sample(MemorySegment.class, s -> s.closeLater(Arena.ofConfined()).allocate(4096))
                .sample(Machine.class, NullArguments::machine)
                .sample(PciTopology.class, s -> machine(s).pci())
                .sample(PciFunction.class, s -> machine(s).pci().functions().getLast())
                .sample(Device.class, s -> machine(s).devices().devices().getLast())
                .sample(Class.class, s -> String.class)
                .sample(long[].class, s -> new long[] {0})
                .sample(Bdf.class, s -> Bdf.parse("0000:00:00.0"))
                .sample(Acs.class, s -> Acs.ofNames(List.of()))
                .sample(MachineSpec.IommuSpec.class, s -> MachineSpec.IommuSpec.DEFAULT)
                .sample(ResourceLimits.class, s -> ResourceLimits.UNLIMITED)
                .receiver(Tracer.class, s -> new Tracer())
                .receiver(DeviceResources.class, s -> new DeviceResources("sample", new Tracer(),
                        ResourceLimits.UNLIMITED))
                .receiver(DeviceCore.class, s -> machine(s).devices())
                .receiver(Machine.class, NullArguments::machine)
                .receiver(PciTopology.class, s -> machine(s).pci())
                .receiver(Iommu.class, s -> machine(s).iommu())
                .receiver(IommuGroup.class, s -> machine(s).iommu().groups().getFirst())
                .receiver(Devres.class, s -> machine(s).devices().devices().getLast().devres());
    }

    /** The default machine of the call {@code s}, booted on first use and closed after the call. */
    public static Machine machine(Scope s) throws Exception {
        return s.shared(Machine.class, x -> x.closeLater(Machine.bootDefault()));
    }

    /** Arguments of {@code type} are made by {@code sample}. */
    public <T> NullArguments sample(Class<T> type, Sample<? extends T> sample) {
        samples.put(type, sample);
        return this;
    }

    /** The public instance methods of {@code type} are tried too, each on a receiver {@code sample} makes. */
    public <T> NullArguments receiver(Class<T> type, Sample<? extends T> sample) {
        receivers.put(type, sample);
        return this;
    }

    /** Parameter {@code index} of {@code Type.method} (or {@code Type.<init>}) takes null by contract. */
    public NullArguments nullable(String typeDotMethod, int index) {
        nullable.add(typeDotMethod + "#" + index);
        return this;
    }

    /**
     * {@code Type.method} (every overload), or with a bare {@code Type} all of that type's entry points, is left out,
     * for the reason the caller writes beside it.
     */
    public NullArguments exclude(String typeOrMethod) {
        excluded.add(typeOrMethod);
        return this;
    }

    /** Sweeps the public types of {@code packages} in the class directory (not jar) of the main class {@code anchor}. */
    public Report sweep(Class<?> anchor, String... packages) {
        List<String> skipped = new ArrayList<>();
        List<String> violations = new ArrayList<>();
        int cases = 0;
        for (Class<?> type : publicTypes(anchor, packages)) {
            for (Executable ex : entryPoints(type)) {
                String name = name(ex);
                if (excluded.contains(name) || excluded.contains(typeName(type)) || !hasReferenceParameter(ex)) {
                    continue;
                }
                Outcome baseline = call(ex, -1);
                if (!(baseline instanceof Outcome.Returned)) {
                    skipped.add(name + ": " + baseline);
                    continue;
                }
                Parameter[] ps = ex.getParameters();
                for (int i = 0; i < ps.length; i++) {
                    if (ps[i].getType().isPrimitive() || nullable.contains(name + "#" + i)) {
                        continue;
                    }
                    cases++;
                    Outcome o = call(ex, i);
                    if (!(o instanceof Outcome.Threw t && t.error() instanceof ErrnoException e
                            && e.errno() == Errno.EINVAL)) {
                        violations.add(name + " with parameter " + i + " (" + ps[i].getType().getSimpleName()
                                + ") null: " + o);
                    }
                }
            }
        }
        return new Report(cases, skipped, violations);
    }

    /** How one call ended. */
    private sealed interface Outcome {
        record Returned() implements Outcome {
            @Override
            public String toString() {
                return "returned normally";
            }
        }

        record Threw(Throwable error) implements Outcome {
            @Override
            public String toString() {
                return "threw " + error;
            }
        }

        record NoSample(String what) implements Outcome {
            @Override
            public String toString() {
                return "no sample " + what;
            }
        }
    }

    /** Calls {@code ex} with sample arguments, parameter {@code nullIndex} null (none if -1), in a fresh scope. */
    private Outcome call(Executable ex, int nullIndex) {
        try (Scope scope = new Scope()) {
            Object receiver = null;
            if (ex instanceof Method m && !Modifier.isStatic(m.getModifiers())) {
                receiver = receivers.get(m.getDeclaringClass()).make(scope);
            }
            Parameter[] ps = ex.getParameters();
            Object[] args = new Object[ps.length];
            for (int i = 0; i < ps.length; i++) {
                if (i == nullIndex) {
                    continue;
                }
                Optional<Object> v = value(ps[i].getType(), scope);
                if (v.isEmpty()) {
                    return new Outcome.NoSample("for " + ps[i].getType().getName());
                }
                args[i] = v.get();
            }
            Object result;
            try {
                result = ex instanceof Method m ? m.invoke(receiver, args) : ((Constructor<?>) ex).newInstance(args);
            } catch (InvocationTargetException e) {
                return new Outcome.Threw(e.getCause());
            }
            if (result instanceof AutoCloseable c) {
                scope.closeLater(c);
            }
            return new Outcome.Returned();
        } catch (Exception e) {
            throw new AssertionError("setting up or closing a call of " + name(ex) + " failed", e);
        }
    }

    private Optional<Object> value(Class<?> type, Scope scope) throws Exception {
        if (type.isPrimitive()) {
            return Optional.of(primitive(type));
        }
        Sample<?> s = samples.get(type);
        if (s != null) {
            return Optional.of(s.make(scope));
        }
        if (type.isEnum()) {
            return Optional.of(type.getEnumConstants()[0]);
        }
        if (type.isInterface() && !type.isSealed()) {
            return Optional.of(Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type},
                    (proxy, method, a) -> switch (method.getName()) {
                        case "equals" -> proxy == a[0];
                        case "hashCode" -> System.identityHashCode(proxy);
                        case "toString" -> "sample " + type.getSimpleName();
                        default -> method.getReturnType().isPrimitive() ? primitive(method.getReturnType()) : null;
                    }));
        }
        return Optional.empty();
    }

    private static Object primitive(Class<?> type) {
        if (type == boolean.class) {
            return false;
        }
        if (type == long.class) {
            return 4096L;
        }
        if (type == int.class) {
            return 1;
        }
        if (type == void.class) {
            return null;
        }
        throw new IllegalArgumentException("no sample for " + type);
    }

    private List<Executable> entryPoints(Class<?> type) {
        List<Executable> out = new ArrayList<>();
        if (!Modifier.isAbstract(type.getModifiers())) {
            out.addAll(List.of(type.getConstructors()));
        }
        for (Method m : type.getDeclaredMethods()) {
            if (Modifier.isPublic(m.getModifiers()) && !m.isSynthetic() && !m.isBridge()
                    && (Modifier.isStatic(m.getModifiers()) || receivers.containsKey(type))) {
                out.add(m);
            }
        }
        out.sort(Comparator.comparing(NullArguments::signature));
        return out;
    }

    private static boolean hasReferenceParameter(Executable ex) {
        return Stream.of(ex.getParameterTypes()).anyMatch(t -> !t.isPrimitive());
    }

    private static String name(Executable ex) {
        return typeName(ex.getDeclaringClass()) + "." + (ex instanceof Constructor<?> ? "<init>" : ex.getName());
    }

    private static String typeName(Class<?> type) {
        String name = type.getName();
        return name.substring(name.lastIndexOf('.') + 1).replace('$', '.');
    }

    private static String signature(Executable ex) {
        return name(ex) + Stream.of(ex.getParameterTypes()).map(Class::getName).toList();
    }

    /** The public types, nested ones included, of {@code packages} in the class directory {@code anchor} came from. */
    private static List<Class<?>> publicTypes(Class<?> anchor, String... packages) {
        List<Class<?>> out = new ArrayList<>();
        Path root;
        try {
            root = Path.of(anchor.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException e) {
            throw new AssertionError("no class directory for " + anchor, e);
        }
        for (String pkg : packages) {
            Path dir = root.resolve(pkg.replace('.', '/'));
            try (Stream<Path> files = Files.list(dir)) {
                for (Path f : files.sorted().toList()) {
                    String file = f.getFileName().toString();
                    if (!file.endsWith(".class") || file.equals("package-info.class")) {
                        continue;
                    }
                    Class<?> c = Class.forName(pkg + "." + file.substring(0, file.length() - 6), false,
                            anchor.getClassLoader());
                    if (isPublicApi(c)) {
                        out.add(c);
                    }
                }
            } catch (IOException | ClassNotFoundException e) {
                throw new AssertionError("cannot list package " + pkg + " under " + root, e);
            }
        }
        return out;
    }

    private static boolean isPublicApi(Class<?> c) {
        for (Class<?> k = c; k != null; k = k.getDeclaringClass()) {
            if (!Modifier.isPublic(k.getModifiers()) || k.isAnonymousClass() || k.isSynthetic()) {
                return false;
            }
        }
        return true;
    }
}
