package dev.dmaplane.launcher;

import java.io.IOException;
import java.lang.reflect.InvocationTargetException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Loads a machine file with the framework's own {@code TopologyLoader} before the runtime starts, as a compiler
 * checks its input before it runs anything: a bad file is then one diagnostic ({@code FILE:LINE:COLUMN: ...})
 * the launcher prints, not an activation failure Declarative Services logs with its stack inside the framework.
 * The framework's classes are loaded from the distribution's {@code bundle/} in a class loader of their own, closed
 * after the check, so that the launcher's class space stays free of them.
 */
final class MachineFileCheck {
    static final String LOADER = "dev.dmaplane.pci.TopologyLoader";
    static final String ERRNO_EXCEPTION = "dev.dmaplane.errno.ErrnoException";

    /** A machine file the framework's loader refused: the message is its diagnostic, the cause its exception. */
    static final class BadMachineFile extends IllegalStateException {
        private static final long serialVersionUID = 1L;

        BadMachineFile(String diagnostic, Throwable cause) {
            super(diagnostic, cause);
        }
    }

    private MachineFileCheck() {
    }

    /**
     * Loads {@code file} and drops what it built.
     *
     * @throws BadMachineFile        if the loader refuses the file, with its message without the errno name
     * @throws IllegalStateException if the framework's loader cannot be run from {@code bundleDir}
     */
    static void check(Path bundleDir, Path file) {
        try (URLClassLoader cl = new URLClassLoader("dmaplane-machine-file-check", jars(bundleDir),
                MachineFileCheck.class.getClassLoader())) {
            Class<?> loader = Class.forName(LOADER, true, cl);
            Class<?> errno = Class.forName(ERRNO_EXCEPTION, false, cl);
            Object topology;
            try {
                topology = loader.getMethod("load", Path.class).invoke(null, file);
            } catch (InvocationTargetException e) {
                Throwable why = e.getCause();
                if (errno.isInstance(why)) {
                    throw new BadMachineFile(withoutErrnoName(why.getMessage()), why);
                }
                throw new IllegalStateException("checking machine file " + file + " failed: " + why, why);
            }
            topology.getClass().getMethod("close").invoke(topology);
        } catch (ReflectiveOperationException | IOException e) {
            throw new IllegalStateException("cannot check machine file " + file + " with the framework in " + bundleDir
                    + ": " + e, e);
        }
    }

    /** {@code EINVAL: m.yaml:3:5: ...} without {@code EINVAL: }, which the position makes redundant to a reader. */
    static String withoutErrnoName(String message) {
        int colon = message.indexOf(": ");
        return colon > 0 && message.substring(0, colon).matches("E[A-Z0-9]+") ? message.substring(colon + 2) : message;
    }

    private static URL[] jars(Path bundleDir) throws IOException {
        List<URL> urls = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(bundleDir, "*.jar")) {
            for (Path jar : ds) {
                urls.add(jar.toUri().toURL());
            }
        }
        return urls.toArray(URL[]::new);
    }
}
