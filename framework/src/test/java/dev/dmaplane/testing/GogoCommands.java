package dev.dmaplane.testing;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;
import org.xml.sax.SAXException;

import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * A command object's Gogo functions called with string arguments the way the shell does it (Felix Gogo's
 * {@code Reflective.invoke}: a public method named as the function whose parameters take the arguments, a
 * {@code String...} last parameter taking the rest). The functions are those of the component's
 * {@code osgi.command.function} property, read from the descriptor bnd wrote ({@code OSGI-INF/<class>.xml}), so a
 * fuzz target calls exactly what the shell offers.
 */
public final class GogoCommands {
    private final Object target;
    private final String scope;
    private final List<String> functions;

    private GogoCommands(Object target, String scope, List<String> functions) {
        this.target = target;
        this.scope = scope;
        this.functions = List.copyOf(functions);
    }

    /** The commands {@code target}'s component descriptor registers. */
    public static GogoCommands of(Object target) {
        String resource = "OSGI-INF/" + target.getClass().getName() + ".xml";
        try (InputStream in = target.getClass().getClassLoader().getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException(resource + " is missing: bnd writes it at process-classes");
            }
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setNamespaceAware(true);
            NodeList props = f.newDocumentBuilder().parse(in).getElementsByTagName("property");
            String scope = null;
            List<String> functions = new ArrayList<>();
            for (int i = 0; i < props.getLength(); i++) {
                Element p = (Element) props.item(i);
                String value = p.hasAttribute("value") ? p.getAttribute("value") : p.getTextContent();
                switch (p.getAttribute("name")) {
                    case "osgi.command.scope" -> scope = value.strip();
                    case "osgi.command.function" -> Arrays.stream(value.split("\n")).map(String::strip)
                            .filter(s -> !s.isEmpty()).forEach(functions::add);
                    default -> {
                    }
                }
            }
            if (scope == null || functions.isEmpty()) {
                throw new IllegalStateException(resource + " registers no Gogo command");
            }
            return new GogoCommands(target, scope, functions);
        } catch (IOException | ParserConfigurationException | SAXException e) {
            throw new IllegalStateException("cannot read " + resource, e);
        }
    }

    /** The command scope ({@code dmaplane}, {@code rdma}, {@code rxe}). */
    public String scope() {
        return scope;
    }

    /** The function names, in the descriptor's order. */
    public List<String> functions() {
        return functions;
    }

    /**
     * Calls {@code function} with {@code args} as Gogo would: a method of exactly that many {@code String}
     * parameters first, else one whose {@code String...} takes the rest.
     *
     * @return the command's result, or empty if no method takes that many strings (the shell's own usage error,
     * not the command's)
     * @throws RuntimeException or {@link Error} exactly as the command threw it
     */
    public Optional<Object> call(String function, List<String> args) {
        Optional<Method> m = Arrays.stream(target.getClass().getMethods())
                .filter(x -> x.getName().equals(function) && !Modifier.isStatic(x.getModifiers()) && takesStrings(x))
                .filter(x -> x.getParameterCount() == args.size()
                        || (x.isVarArgs() && args.size() >= x.getParameterCount() - 1))
                .min(Comparator.comparing(Method::isVarArgs));
        if (m.isEmpty()) {
            return Optional.empty();
        }
        Method method = m.get();
        Object[] values;
        if (method.isVarArgs()) {
            int fixed = method.getParameterCount() - 1;
            values = new Object[fixed + 1];
            for (int i = 0; i < fixed; i++) {
                values[i] = args.get(i);
            }
            values[fixed] = args.subList(fixed, args.size()).toArray(String[]::new);
        } else {
            values = args.toArray();
        }
        try {
            return Optional.ofNullable(method.invoke(target, values));
        } catch (InvocationTargetException e) {
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            if (e.getCause() instanceof Error err) {
                throw err;
            }
            throw new AssertionError(scope + ":" + function + " threw a checked exception", e.getCause());
        } catch (IllegalAccessException e) {
            throw new AssertionError(scope + ":" + function + " is not callable", e);
        }
    }

    /**
     * Up to {@code max} arguments for a fuzzed command line: each one of {@code words} (the options, names and
     * values the commands know, and their edges) or any string the fuzzer makes.
     */
    public static List<String> arguments(FuzzedDataProvider data, List<String> words, int max) {
        int n = data.consumeInt(0, max);
        List<String> args = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            args.add(data.consumeBoolean() ? data.pickValue(words) : data.consumeString(32));
        }
        return args;
    }

    /** {@code scope:function 'arg' ...}, each argument quoted so that empty and blank ones show. */
    public String commandLine(String function, List<String> args) {
        StringBuilder sb = new StringBuilder(scope).append(':').append(function);
        args.forEach(a -> sb.append(" '").append(a).append('\''));
        return sb.toString();
    }

    private static boolean takesStrings(Method m) {
        Class<?>[] types = m.getParameterTypes();
        for (int i = 0; i < types.length; i++) {
            boolean last = i == types.length - 1;
            if (types[i] != String.class && !(last && m.isVarArgs() && types[i] == String[].class)) {
                return false;
            }
        }
        return true;
    }
}
