package dev.dmaplane.shell;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.annotation.Annotation;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The usage of a Gogo command ({@code osgi.command.scope} and {@code osgi.command.function} service properties, OSGi
 * RFC 147): one line per form, that is per public method of the function's name, with the arguments and what the
 * form does as the Gogo runtime's {@code @Descriptor} annotations on the method and its parameters say. The
 * annotation is read by its name, so that the bundles import the Gogo runtime's package only optionally.
 *
 * <p>A command object that also has {@code public String _main(String... argv)} is what the Gogo runtime calls
 * when no form takes the arguments ({@code Reflective.invoke} hands it the function's name as {@code argv[0]});
 * answering with {@link #wrongArguments} there turns Gogo's "Cannot coerce" into the command's usage.
 */
public final class CommandUsage {
    /** The Gogo runtime's annotation: a method's or parameter's description. */
    static final String DESCRIPTOR = "org.apache.felix.service.command.Descriptor";

    private CommandUsage() {
    }

    /**
     * One line per form of {@code scope:function} on {@code commands}, fewest arguments first:
     * {@code scope:function ARG...}, then what the form does, if described.
     */
    public static List<String> forms(Object commands, String scope, String function) {
        ErrnoException.requireNonNull(commands, "command usage: command object");
        ErrnoException.requireNonNull(scope, "command usage: scope");
        ErrnoException.requireNonNull(function, "command usage: function");
        List<Method> methods = Arrays.stream(commands.getClass().getMethods())
                .filter(m -> m.getName().equals(function) && !Modifier.isStatic(m.getModifiers()))
                .sorted(Comparator.comparingInt(Method::getParameterCount)
                        .thenComparing(m -> Arrays.toString(m.getParameterTypes())))
                .toList();
        return methods.stream().map(m -> form(scope, m)).toList();
    }

    /** What the command {@code scope:function} does: its first described form's description, if any. */
    public static Optional<String> description(Object commands, String function) {
        ErrnoException.requireNonNull(commands, "command usage: command object");
        ErrnoException.requireNonNull(function, "command usage: function");
        return Arrays.stream(commands.getClass().getMethods())
                .filter(m -> m.getName().equals(function))
                .sorted(Comparator.comparingInt(Method::getParameterCount))
                .map(m -> descriptor(m.getAnnotations()))
                .flatMap(Optional::stream)
                .findFirst();
    }

    /**
     * {@code EINVAL} for a command line that none of the forms of {@code argv[0]} takes (the arguments of
     * {@code _main}): names the command and its arguments, then lists the forms.
     */
    public static ErrnoException wrongArguments(Object commands, String scope, String... argv) {
        if (argv.length == 0) {
            return new ErrnoException(Errno.EINVAL, scope + ": no command given");
        }
        String command = scope + ":" + argv[0];
        String words = String.join(" ", Arrays.asList(argv).subList(1, argv.length));
        List<String> forms = forms(commands, scope, argv[0]);
        String usage = forms.stream().map(f -> "  " + f).collect(Collectors.joining("\n"));
        return new ErrnoException(Errno.EINVAL, command + (words.isEmpty() ? "" : " " + words)
                + ": no form of " + command + " takes " + (words.isEmpty() ? "no arguments" : "these arguments")
                + "; usage:\n" + usage);
    }

    private static String form(String scope, Method m) {
        StringBuilder sb = new StringBuilder(scope).append(':').append(m.getName());
        Class<?>[] types = m.getParameterTypes();
        Annotation[][] annotations = m.getParameterAnnotations();
        for (int i = 0; i < types.length; i++) {
            if (types[i].getName().equals("org.apache.felix.service.command.CommandSession")) {
                continue; // Gogo passes the session itself
            }
            Class<?> type = types[i].isArray() ? types[i].getComponentType() : types[i];
            String label = descriptor(annotations[i]).orElse(type.getSimpleName().toUpperCase(Locale.ROOT));
            sb.append(' ').append(types[i].isArray() ? "[" + label + "...]" : label);
        }
        Optional<String> what = descriptor(m.getAnnotations());
        return what.map(w -> String.format("%-32s %s", sb, w)).orElse(sb.toString());
    }

    /** The value of the Gogo {@code @Descriptor} among {@code annotations}, if there is one. */
    static Optional<String> descriptor(Annotation[] annotations) {
        for (Annotation a : annotations) {
            if (a.annotationType().getName().equals(DESCRIPTOR)) {
                try {
                    return Optional.of((String) a.annotationType().getMethod("value").invoke(a));
                } catch (NoSuchMethodException | IllegalAccessException | InvocationTargetException e) {
                    throw new IllegalStateException(DESCRIPTOR + " without a readable value(): " + e, e);
                }
            }
        }
        return Optional.empty();
    }
}
