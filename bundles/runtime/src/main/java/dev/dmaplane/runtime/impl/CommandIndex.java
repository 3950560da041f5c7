package dev.dmaplane.runtime.impl;

import dev.dmaplane.shell.CommandUsage;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Every Gogo command of every loaded bundle: the services with an {@code osgi.command.scope} property (OSGi RFC
 * 147), by bundle, one line per command with what it does ({@code help COMMAND} shows its forms and arguments). The
 * shell's own commands (the Felix bundles' {@code gogo:} and {@code felix:}) are left to Gogo's {@code help}.
 */
final class CommandIndex {
    /** The service filter of Gogo commands. */
    static final String FILTER = "(osgi.command.scope=*)";
    /** Bundles whose commands are the shell's own. */
    private static final String SHELL_BUNDLES = "org.apache.felix.";

    private CommandIndex() {
    }

    /** The index seen from {@code bundle}'s context; empty outside a framework (a null bundle) or when stopped. */
    static String of(Bundle bundle) {
        BundleContext ctx = bundle == null ? null : bundle.getBundleContext();
        if (ctx == null) {
            return "";
        }
        ServiceReference<?>[] refs;
        try {
            refs = ctx.getAllServiceReferences(null, FILTER);
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException("filter " + FILTER + ": " + e.getMessage(), e);
        }
        Map<String, Map<String, String>> byBundle = new TreeMap<>();
        for (ServiceReference<?> ref : refs == null ? new ServiceReference<?>[0] : refs) {
            Bundle owner = ref.getBundle();
            if (owner == null || owner.getSymbolicName() == null || owner.getSymbolicName().startsWith(SHELL_BUNDLES)) {
                continue; // unregistered meanwhile, or the shell's own
            }
            String scope = String.valueOf(ref.getProperty("osgi.command.scope"));
            Object commands = ctx.getService(ref);
            if (commands == null) {
                continue; // unregistered meanwhile
            }
            try {
                Map<String, String> lines = byBundle.computeIfAbsent(owner.getSymbolicName(), b -> new TreeMap<>());
                for (String function : functions(ref.getProperty("osgi.command.function"))) {
                    lines.put(scope + ":" + function, CommandUsage.description(commands, function).orElse(""));
                }
            } finally {
                ctx.ungetService(ref);
            }
        }
        StringBuilder sb = new StringBuilder("Commands of the loaded bundles ('help COMMAND' shows its arguments):");
        byBundle.forEach((bsn, lines) -> {
            sb.append("\n  ").append(bsn);
            lines.forEach((command, what) -> sb.append('\n').append(String.format("    %-26s %s", command, what).stripTrailing()));
        });
        return sb.toString();
    }

    /** {@code osgi.command.function}: a string, an array of them or a collection. */
    private static List<String> functions(Object property) {
        List<String> out = new ArrayList<>();
        if (property instanceof String[] a) {
            out.addAll(List.of(a));
        } else if (property instanceof Collection<?> c) {
            c.forEach(f -> out.add(String.valueOf(f)));
        } else if (property != null) {
            out.add(String.valueOf(property));
        }
        return out;
    }
}
