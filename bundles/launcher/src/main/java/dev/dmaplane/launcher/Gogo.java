package dev.dmaplane.launcher;

import org.osgi.framework.BundleContext;
import org.osgi.util.tracker.ServiceTracker;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * Runs Gogo command lines from outside the framework. The Gogo API ({@code org.apache.felix.service.command})
 * lives in the gogo runtime bundle, not on the launcher's class path, so the {@code CommandProcessor} service and
 * its sessions are driven through their interfaces by reflection.
 */
final class Gogo {
    static final String PROCESSOR = "org.apache.felix.service.command.CommandProcessor";
    static final String SESSION = "org.apache.felix.service.command.CommandSession";
    /** {@code Converter.INSPECT}: full formatting of a result. */
    private static final int INSPECT = 0;

    private Gogo() {
    }

    /** A command that failed; the message is what Gogo reported. */
    static final class CommandException extends Exception {
        private static final long serialVersionUID = 1L;

        CommandException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /**
     * Executes {@code commandLine} in a fresh session whose input is empty and whose output is captured.
     *
     * @return what the command printed followed by its formatted result, if any
     * @throws CommandException when the command fails
     */
    static String execute(BundleContext ctx, String commandLine, Duration timeout) throws Exception {
        ServiceTracker<Object, Object> tracker = new ServiceTracker<>(ctx, PROCESSOR, null);
        tracker.open();
        try {
            Object processor = tracker.waitForService(timeout.toMillis());
            if (processor == null) {
                throw new IllegalStateException("no Gogo CommandProcessor service within " + timeout.toSeconds() + " s");
            }
            Class<?> processorType = api(processor.getClass(), PROCESSOR);
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8);
            InputStream in = new ByteArrayInputStream(new byte[0]);
            Object session = processorType.getMethod("createSession", InputStream.class, OutputStream.class, OutputStream.class)
                    .invoke(processor, in, out, out);
            Class<?> sessionType = api(session.getClass(), SESSION);
            try {
                Object result;
                try {
                    result = sessionType.getMethod("execute", CharSequence.class).invoke(session, commandLine);
                } catch (InvocationTargetException e) {
                    out.flush();
                    String printed = buf.toString(StandardCharsets.UTF_8);
                    Throwable cause = e.getCause();
                    throw new CommandException((printed.isEmpty() ? "" : printed + "\n") + cause, cause);
                }
                if (result != null) {
                    CharSequence text = result instanceof CharSequence cs ? cs
                            : (CharSequence) sessionType.getMethod("format", Object.class, int.class).invoke(session, result, INSPECT);
                    out.println(text);
                }
                out.flush();
                return buf.toString(StandardCharsets.UTF_8).stripTrailing();
            } finally {
                sessionType.getMethod("close").invoke(session);
            }
        } finally {
            tracker.close();
        }
    }

    /** The interface named {@code name} that {@code impl} implements (so methods are invoked through it). */
    private static Class<?> api(Class<?> impl, String name) {
        for (Class<?> c = impl; c != null; c = c.getSuperclass()) {
            for (Class<?> i : c.getInterfaces()) {
                Class<?> found = find(i, name);
                if (found != null) {
                    return found;
                }
            }
        }
        throw new IllegalStateException(impl.getName() + " does not implement " + name);
    }

    private static Class<?> find(Class<?> i, String name) {
        if (i.getName().equals(name)) {
            return i;
        }
        for (Class<?> sup : i.getInterfaces()) {
            Class<?> found = find(sup, name);
            if (found != null) {
                return found;
            }
        }
        return null;
    }
}
