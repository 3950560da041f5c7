package dev.dmaplane.launcher;

import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceReference;

import java.lang.reflect.Method;
import java.util.Collection;
import java.util.Optional;

/**
 * Asks Declarative Services why a component is not there: the {@code ServiceComponentRuntime} service's DTOs
 * tell a component whose activate method threw ({@code FAILED_ACTIVATION} with the failure text). Reflective, as
 * the DS API lives in a bundle, not on the launcher's class path.
 */
final class ScrDiagnostics {
    static final String SCR = "org.osgi.service.component.runtime.ServiceComponentRuntime";
    /** {@code ComponentConfigurationDTO.FAILED_ACTIVATION} (DS 1.4). */
    static final int FAILED_ACTIVATION = 16;

    private ScrDiagnostics() {
    }

    /** The failure of component {@code name} if its activation failed, else empty (also when DS is not up). */
    static Optional<String> failedActivation(BundleContext ctx, String name) {
        ServiceReference<?> ref = ctx.getServiceReference(SCR);
        if (ref == null) {
            return Optional.empty();
        }
        Object scr = ctx.getService(ref);
        if (scr == null) {
            return Optional.empty();
        }
        try {
            Class<?> api = apiOf(scr.getClass());
            Collection<?> descriptions = (Collection<?>) api.getMethod("getComponentDescriptionDTOs", Bundle[].class)
                    .invoke(scr, (Object) new Bundle[0]);
            Method configurations = null;
            for (Method m : api.getMethods()) {
                if (m.getName().equals("getComponentConfigurationDTOs") && m.getParameterCount() == 1) {
                    configurations = m;
                }
            }
            for (Object d : descriptions) {
                if (!name.equals(d.getClass().getField("name").get(d)) || configurations == null) {
                    continue;
                }
                for (Object c : (Collection<?>) configurations.invoke(scr, d)) {
                    if (c.getClass().getField("state").getInt(c) == FAILED_ACTIVATION) {
                        return Optional.of(String.valueOf(c.getClass().getField("failure").get(c)).lines().findFirst().orElse("?"));
                    }
                }
            }
            return Optional.empty();
        } catch (ReflectiveOperationException | RuntimeException e) {
            return Optional.empty(); // diagnostics only: never the reason to fail
        } finally {
            ctx.ungetService(ref);
        }
    }

    private static Class<?> apiOf(Class<?> impl) {
        for (Class<?> c = impl; c != null; c = c.getSuperclass()) {
            for (Class<?> i : c.getInterfaces()) {
                if (i.getName().equals(SCR)) {
                    return i;
                }
            }
        }
        throw new IllegalStateException(impl + " does not implement " + SCR);
    }
}
