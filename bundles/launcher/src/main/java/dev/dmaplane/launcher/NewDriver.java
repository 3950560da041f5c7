package dev.dmaplane.launcher;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * {@code dmaplane new-driver NAME}: writes a Maven project for a new accelerator, a device-model bundle and a
 * driver bundle built on dmaplane, from the templates in {@code kit/} (listed in {@code kit/files.txt}). The
 * project builds and its tests pass as generated.
 */
final class NewDriver {
    private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9]{1,15}");
    private static final Pattern PACKAGE = Pattern.compile("[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*");
    /** The device models the project ships (framework: copyengine; drivers/crc, drivers/gpu): a new one must differ. */
    private static final List<String> TAKEN = List.of("copyengine", "crc", "gpu");
    private static final String KIT = "/dev/dmaplane/launcher/kit/";

    private NewDriver() {
    }

    /**
     * Generates project {@code name} in {@code parent}/{@code name}.
     *
     * @param pkg     the Java package, {@code dev.dmaplane.driver.NAME} when null
     * @param version the dmaplane version the project builds on
     * @return the project directory
     * @throws IllegalArgumentException naming the bad name, package or an existing directory
     */
    static Path generate(String name, String pkg, Path parent, String version) throws IOException {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("driver name '" + name + "' must be 2 to 16 of a-z and 0-9, starting"
                    + " with a letter (it names the device model, the bundles and the classes)");
        }
        if (TAKEN.contains(name)) {
            throw new IllegalArgumentException("driver name '" + name + "' is taken by a model dmaplane ships");
        }
        String p = pkg == null ? "dev.dmaplane.driver." + name : pkg;
        if (!PACKAGE.matcher(p).matches()) {
            throw new IllegalArgumentException("package '" + p + "' is not a lower-case Java package name");
        }
        Path dir = parent.resolve(name).toAbsolutePath().normalize();
        if (Files.exists(dir)) {
            throw new IllegalArgumentException(dir + " already exists; choose another name or directory");
        }
        // the Maven group leaves out the package's last segment when it is the name, so that the bundle symbolic
        // names (group + artifact) come out as PACKAGE.model and PACKAGE.driver
        String group = p.endsWith("." + name) ? p.substring(0, p.length() - name.length() - 1) : p;
        Map<String, String> tokens = Map.of(
                "__group__", group,
                "__name__", name,
                "__Name__", name.substring(0, 1).toUpperCase(Locale.ROOT) + name.substring(1),
                "__package__", p,
                "__path__", p.replace('.', '/'),
                "__version__", version,
                "__deviceid__", String.format("0x%04x", 0x0a00 | (name.hashCode() & 0xFF)));
        for (String line : text("files.txt").lines().toList()) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            String[] parts = line.trim().split("\\s+");
            Path target = dir.resolve(substitute(parts[1], tokens));
            Files.createDirectories(target.getParent());
            Files.writeString(target, substitute(text(parts[0]), tokens));
        }
        return dir;
    }

    private static String substitute(String s, Map<String, String> tokens) {
        String out = s;
        for (Map.Entry<String, String> t : tokens.entrySet()) {
            out = out.replace(t.getKey(), t.getValue());
        }
        return out;
    }

    private static String text(String template) throws IOException {
        try (InputStream in = NewDriver.class.getResourceAsStream(KIT + template)) {
            if (in == null) {
                throw new IllegalStateException("kit template " + template + " missing from the launcher jar");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
