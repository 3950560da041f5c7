package dev.dmaplane.runtime.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.pci.TopologyLoader;
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
        LOG.info("machine booted ({}): {} PCI functions, {} MiB RAM, IOMMU {}", props.get(SOURCE_PROPERTY),
                machine.pci().functions().size(), machine.memory().size() >> 20,
                machine.iommu().enabled() ? machine.iommu().groups().size() + " groups" : "off");
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

    /**
     * Boots the machine described by {@code machineFile}, or the embedded default machine when it is null or blank,
     * without device models: those arrive as services.
     *
     * @throws ErrnoException {@code ENOENT} if the file does not exist; the loader's errno with the file, line and
     *                        column of the bad entry; or the machine's own errno with the file named in the message
     */
    static Machine boot(String machineFile) {
        // device models arrive as OSGi services (DeviceModelBinder), not from the class path
        Machine.Options options = Machine.Options.DEFAULT.withClassPathModels(false);
        if (machineFile == null || machineFile.isBlank()) {
            return Machine.boot(TopologyLoader.defaultMachine(), options);
        }
        Path path = Path.of(machineFile).toAbsolutePath();
        if (!Files.isRegularFile(path)) {
            throw new ErrnoException(Errno.ENOENT, "machine file " + path + " does not exist");
        }
        PciTopology topology = TopologyLoader.load(path); // its errors begin with the file, line and column
        try {
            return Machine.boot(topology, options);
        } catch (ErrnoException e) {
            String why = e.getMessage().startsWith(e.errno().name() + ": ")
                    ? e.getMessage().substring(e.errno().name().length() + 2) : e.getMessage();
            throw new ErrnoException(e.errno(), "machine file " + path + ": " + why, e);
        }
    }
}
