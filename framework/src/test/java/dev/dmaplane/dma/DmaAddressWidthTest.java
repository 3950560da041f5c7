package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A device's hardware DMA address width, declared by its model ({@code Documentation/core-api/dma-api-howto.rst},
 * "DMA addressing capabilities": what the device can address is a property of the device, which its driver tells the
 * kernel with {@code dma_set_mask_and_coherent}); 64 bits for a PCIe function whose model declares nothing.
 */
class DmaAddressWidthTest {
    private static final String HCA = "05:00.0";
    private static final String ENGINE = "03:00.0";
    private final List<Machine> machines = new ArrayList<>();

    @AfterEach
    void close() {
        machines.forEach(Machine::close);
    }

    private Machine boot(Machine.Options options) {
        String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE);
        Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), options);
        machines.add(m);
        return m;
    }

    /** A model that declares {@code bits} of address width and does nothing else. */
    private record Narrow(int bits) implements DeviceModel {
        @Override
        public String name() {
            return "copyengine";
        }

        @Override
        public ModelDevice realize(ModelContext ctx) {
            ctx.dmaAddressBits(bits);
            return kind -> { };
        }
    }

    @Test
    void aPcieFunctionDrivesSixtyFourBitsUnlessItsModelDeclaresLess() {
        Machine m = boot(Machine.Options.DEFAULT);
        assertEquals(64, m.pci().function(HCA).dmaAddressBits(), "no model: a PCIe function's 64 bits");
        assertEquals(64, m.pci().function(ENGINE).dmaAddressBits(), "the copy engine declares nothing");
        assertEquals(0xFFFF_FFFFL, m.pci().function(ENGINE).dma().dmaMask(), "the kernel's mask stays 32 bits until a driver sets it");

        Machine narrow = boot(Machine.Options.DEFAULT.withClassPathModels(false));
        narrow.addModel(new Narrow(40));
        assertEquals(40, narrow.pci().function(ENGINE).dmaAddressBits());
    }

    @Test
    void aWidthOutside32To64LeavesTheFunctionAbsentNamingIt() {
        Machine m = boot(Machine.Options.DEFAULT.withClassPathModels(false));
        m.addModel(new Narrow(31));
        PciFunction fn = m.pci().function(ENGINE);
        String why = fn.absence().orElseThrow();
        assertTrue(why.contains("31 bits is outside 32..64"), why);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> m.pci().setDmaAddressBits(fn, 65)).errno());
    }
}
