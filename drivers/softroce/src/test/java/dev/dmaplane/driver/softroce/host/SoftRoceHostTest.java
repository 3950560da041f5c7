package dev.dmaplane.driver.softroce.host;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.testing.Loopback;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.Test;

import java.net.InetAddress;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * One call to a machine with Soft-RoCE up, as {@code modprobe rdma_rxe} gives a Linux box its rxe devices
 * ({@code drivers/infiniband/sw/rxe}); closing it leaves nothing bound, registered or allocated.
 */
class SoftRoceHostTest {
    @Test
    void bootBringsUpBothHcasAndCloseTakesEverythingDown() {
        Machine machine;
        try (SoftRoceHost host = SoftRoceHost.boot()) {
            machine = host.machine();
            assertTrue(host.core().device("rxe0").isPresent() && host.core().device("rxe1").isPresent());
            AddressSpace mm = machine.newAddressSpace("app");
            VerbsContext ctx = host.core().device("rxe0").orElseThrow().open(mm);
            ProtectionDomain pd = ctx.allocPd();
            long buf = mm.mmapAnonymous(1 << 16, Prot.PROT_READ | Prot.PROT_WRITE);
            MemoryRegion mr = pd.regMr(buf, 1 << 16, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
            assertNotEquals(0, mr.rkey());
            assertEquals(16, machine.memory().pinnedFrames(), "the region is pinned while registered");
        }
        assertTrue(machine.isClosed(), "a host that booted its machine closes it");
    }

    @Test
    void onAMachineOfTheCallersItLeavesTheMachineRunning() {
        try (Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE)) {
            long frames = machine.memory().allocatedFrames();
            try (SoftRoceHost host = SoftRoceHost.on(machine)) {
                assertTrue(host.core().device("rxe1").isPresent());
                ErrnoException twice = assertThrows(ErrnoException.class, () -> SoftRoceHost.on(machine));
                assertEquals(Errno.EEXIST, twice.errno(), "one rxe driver per machine");
            }
            assertFalse(machine.isClosed());
            assertTrue(machine.devices().drivers().isEmpty(), "the driver is gone");
            assertEquals(0, machine.activeDmaMappings());
            assertEquals(frames, machine.memory().allocatedFrames());
        }
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> SoftRoceHost.on(null)).errno());
    }

    /** {@code rxe_net.c}'s UDP tunnel: a function named on UDP has its address as GID and a socket, until close. */
    @Test
    void onUdpAFunctionHasItsAddressAsGidAndNothingStaysAfterClose() throws Exception {
        InetAddress ip = Loopback.address(31);
        try (Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE)) {
            try (SoftRoceHost host = SoftRoceHost.on(machine, Map.of("0000:04:00.0", ip))) {
                AddressSpace mm = machine.newAddressSpace("app");
                VerbsContext ctx = host.core().device("rxe0").orElseThrow().open(mm);
                assertEquals(Gid.of(ip), ctx.queryGid(1, 1));
                ctx.close();
                mm.close();
            }
            assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> t.getName().startsWith("softroce-") && t.isAlive()).count(), "no thread left");
            try (SoftRoceHost again = SoftRoceHost.on(machine, Map.of("0000:04:00.0", ip))) {
                assertTrue(again.core().device("rxe0").isPresent(), "the address was given back at close");
            }
            ErrnoException v6 = assertThrows(ErrnoException.class,
                    () -> SoftRoceHost.on(machine, Map.of("0000:04:00.0", InetAddress.getByName("::1"))));
            assertEquals(Errno.EINVAL, v6.errno());
            assertTrue(machine.devices().drivers().isEmpty(), "a refused driver leaves nothing registered");
        }
    }

    /**
     * rxe's GUIDs come from its netdev's MAC ({@code addrconf_addr_eui48} in {@code rxe_init_device_param} and
     * {@code rxe_register_device}): distinct per HCA, the system image GUID equal to the node GUID.
     */
    @Test
    void eachHcaHasTheGuidsOfItsMac() {
        try (SoftRoceHost host = SoftRoceHost.boot()) {
            var rxe0 = host.core().device("rxe0").orElseThrow();
            var rxe1 = host.core().device("rxe1").orElseThrow();
            assertEquals(0x001da0fffe000004L, rxe0.nodeGuid(), "MAC 02:1d:a0:00:00:04, U/L bit flipped, ff:fe inserted");
            assertEquals(0x001da0fffe000005L, rxe1.nodeGuid());
            assertEquals(rxe0.nodeGuid(), rxe0.attr().sysImageGuid());
            assertEquals(rxe1.nodeGuid(), rxe1.attr().sysImageGuid());
        }
    }
}
