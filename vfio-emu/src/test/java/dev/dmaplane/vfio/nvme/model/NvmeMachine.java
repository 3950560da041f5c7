package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;

import java.util.function.UnaryOperator;

/**
 * The default machine with the {@code nvme} model at {@code 0000:06:00.0}, its properties replaced by
 * {@code properties} (YAML lines under {@code properties:}), and the test driver bound. Closing it closes the machine.
 */
final class NvmeMachine implements AutoCloseable {
    static final String NVME = "0000:06:00.0";
    static final String DEFAULT_PROPERTIES = "                namespaces: 1\n                namespaceSize: 1GiB\n";

    final Machine machine;
    final PciFunction fn;
    Controller controller;
    /** The model as this machine got it: {@link Machine#removeModel} takes the controller out. */
    final DeviceModel model;
    final NvmeTestDriver driver;

    static final String BAR0 = "                - { index: 0, size: 16KiB, kind: mmio }\n";

    NvmeMachine(String properties, boolean msix, boolean ioQueues) {
        this(BAR0, properties, msix, ioQueues);
    }

    /** With {@code bars} (YAML lines) instead of the default machine's BAR0 line. */
    NvmeMachine(String bars, String properties, boolean msix, boolean ioQueues) {
        this(bars, properties, msix, ioQueues, UnaryOperator.identity());
    }

    /** The default machine, polled, its controller reaching its namespaces through {@code media}. */
    NvmeMachine(UnaryOperator<Media> media) {
        this(BAR0, DEFAULT_PROPERTIES, false, true, media);
    }

    private NvmeMachine(String bars, String properties, boolean msix, boolean ioQueues, UnaryOperator<Media> media) {
        String text = TopologyLoader.defaultMachineText();
        if (!text.contains(DEFAULT_PROPERTIES) || !text.contains(BAR0)) {
            throw new IllegalStateException("the default machine's NVMe BARs or properties changed:\n" + text);
        }
        machine = Machine.boot(TopologyLoader.load(text.replace(DEFAULT_PROPERTIES, properties).replace(BAR0, bars),
                TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
        fn = machine.pci().function(NVME);
        model = new DeviceModel() {
            @Override
            public String name() {
                return NvmeModel.NAME;
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                ModelDevice d = new NvmeModel(media).realize(ctx);
                controller = (Controller) d;
                return d;
            }
        };
        machine.addModel(model);
        driver = new NvmeTestDriver(msix, ioQueues).memory(machine.memory());
        if (fn.isPresent()) {
            machine.devices().registerDriver(driver);
        }
    }

    NvmeMachine(boolean msix) {
        this(DEFAULT_PROPERTIES, msix, true);
    }

    NvmeTestDriver.Bound bound() {
        return driver.bound;
    }

    @Override
    public void close() {
        machine.close();
    }
}
