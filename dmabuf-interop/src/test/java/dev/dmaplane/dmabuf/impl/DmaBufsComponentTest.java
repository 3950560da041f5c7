package dev.dmaplane.dmabuf.impl;

import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.machine.Machine;
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
 * The interop bundle's DS component offers the machine's one dma-buf core ({@code drivers/dma-buf/dma-buf.c}'s
 * {@code dmabuf_list}) as a service: the instance a plain class path reaches with {@link DmaBufs#of}, never a new
 * one; deactivation withdraws the service and leaves the registry to the machine.
 */
class DmaBufsComponentTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final BundleContext context = mock(BundleContext.class);

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    @SuppressWarnings("unchecked")
    void dmaBufsServiceIsTheMachinesRegistry() {
        ServiceRegistration<DmaBufs> reg = mock(ServiceRegistration.class);
        when(context.registerService(eq(DmaBufs.class), any(DmaBufs.class), isNull())).thenReturn(reg);

        DmaBufsComponent component = new DmaBufsComponent(context, machine);

        verify(context).registerService(eq(DmaBufs.class), same(DmaBufs.of(machine)), isNull());
        component.deactivate();
        verify(reg).unregister();
        assertSame(DmaBufs.of(machine), DmaBufs.of(machine), "the registry stays the machine's");
    }
}
