package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;

import static org.junit.jupiter.api.Assertions.*;
import static org.mockito.ArgumentMatchers.any;
import static org.mockito.ArgumentMatchers.eq;
import static org.mockito.ArgumentMatchers.isNull;
import static org.mockito.Mockito.*;

/**
 * The interop bundle's DS component offers the machine's one p2pdma core ({@code drivers/pci/p2pdma.c}, whose
 * providers every driver shares) as a service: the instance a plain class path reaches with {@link P2pDma#of},
 * never a new one; deactivation withdraws the service and leaves the core to the machine.
 */
class P2pDmaComponentTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final BundleContext context = mock(BundleContext.class);

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    @SuppressWarnings("unchecked")
    void p2pDmaServiceIsTheMachinesCore() {
        ServiceRegistration<P2pDma> reg = mock(ServiceRegistration.class);
        when(context.registerService(eq(P2pDma.class), any(P2pDma.class), isNull())).thenReturn(reg);

        P2pDmaComponent component = new P2pDmaComponent(context, machine);

        verify(context).registerService(eq(P2pDma.class), same(P2pDma.of(machine)), isNull());
        component.deactivate();
        verify(reg).unregister();
        assertSame(P2pDma.of(machine), P2pDma.of(machine), "the core stays the machine's");
    }
}
