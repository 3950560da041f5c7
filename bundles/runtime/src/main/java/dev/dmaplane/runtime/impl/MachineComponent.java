package dev.dmaplane.runtime.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Dictionary;
import java.util.Hashtable;

/**
 * Boots the one {@link Machine} of this runtime and offers it as an OSGi service of type {@link Machine}. The
 * machine file comes from the framework property {@value #MACHINE_FILE}; without it the default machine boots.
 * Deactivation withdraws the service first (drivers unbind while memory is still there), then closes the machine.
 */
@Component(immediate = true, service = {})
public final class MachineComponent {
    /** Framework property naming the machine (topology) file to boot. */
    public static final String MACHINE_FILE = "dmaplane.machine";
    /** Service property telling where the machine came from: the file path or {@code default}. */
    public static final String SOURCE_PROPERTY = "dmaplane.machine.source";

    private static final Logger LOG = LoggerFactory.getLogger(MachineComponent.class);

    private Machine machine;
    private ServiceRegistration<Machine> registration;

    @Activate
    void activate(BundleContext context) {
        String file = context.getProperty(MACHINE_FILE);
        machine = boot(file);
        Dictionary<String, Object> props = new Hashtable<>();
        props.put(SOURCE_PROPERTY, file == null || file.isBlank() ? "default" : file);
        registration = context.registerService(Machine.class, machine, props);
        LOG.info("machine booted ({}): {} devices, {} MiB RAM", props.get(SOURCE_PROPERTY),
                machine.devices().devices().size(), machine.memory().size() >> 20);
    }

    @Deactivate
    void deactivate() {
        try {
            if (registration != null) {
                registration.unregister();
            }
        } finally {
            registration = null;
            if (machine != null) {
                machine.close();
                machine = null;
            }
        }
    }

    /** Boots the machine described by {@code machineFile}, or the default machine when it is null or blank. */
    static Machine boot(String machineFile) {
        if (machineFile == null || machineFile.isBlank()) {
            Machine m = Machine.bootDefault();
            if (m.devices().devices().isEmpty()) {
                StandInDevices.populate(m.devices()); // until the PCI topology lands, see StandInDevices
            }
            return m;
        }
        Path path = Path.of(machineFile);
        if (!Files.isRegularFile(path)) {
            throw new ErrnoException(Errno.ENOENT, "machine file " + path.toAbsolutePath() + " does not exist");
        }
        // Machine.boot(Path) comes with the PCI topology loader; call it here once it is in the framework.
        throw new ErrnoException(Errno.EOPNOTSUPP, "cannot boot machine file " + path
                + ": this framework has no topology loader yet (Machine.boot(Path))");
    }
}
