package dev.dmaplane.runtime.impl;

import org.apache.felix.service.command.Descriptor;
import org.osgi.framework.BundleContext;
import org.osgi.framework.BundleException;
import org.osgi.framework.Constants;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;

/**
 * {@code exit} in the Gogo shell: stops the framework, as {@code stop 0} does (the system bundle's stop, OSGi Core
 * 4.2.7), so that the launcher's {@code run} ends; Felix's plain shell has no {@code exit} of its own.
 */
@Component(service = ShellExit.class, property = {
        "osgi.command.scope=dmaplane",
        "osgi.command.function=exit"})
public final class ShellExit {
    private final BundleContext context;

    @Activate
    public ShellExit(BundleContext context) {
        this.context = context;
    }

    /** Stops the framework; every bundle stops, drivers unbind, and the launcher exits. */
    @Descriptor("stop the runtime and leave the shell (as stop 0)")
    public String exit() throws BundleException {
        context.getBundle(Constants.SYSTEM_BUNDLE_LOCATION).stop();
        return "stopping the runtime";
    }
}
