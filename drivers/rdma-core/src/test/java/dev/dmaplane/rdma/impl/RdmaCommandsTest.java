package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.Fixture;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The {@code rdma:} Gogo commands print what iproute2's {@code rdma dev}, {@code rdma link} and {@code rdma res} do. */
class RdmaCommandsTest {
    private final Fixture f = new Fixture();
    private final RdmaCommands cmd = new RdmaCommands(f.core);

    @AfterEach
    void close() {
        f.close();
    }

    @Test
    void devLinkAndRes() {
        assertEquals("""
                0: rxe0: node_type ca fw 1.0.0 node_guid 021d:a0ff:fe00:0001 sys_image_guid 0000:0000:0000:0000 driver loopback
                1: rxe1: node_type ca fw 1.0.0 node_guid 021d:a0ff:fe00:0001 sys_image_guid 0000:0000:0000:0000 driver loopback""",
                cmd.dev());
        String link = cmd.link();
        assertTrue(link.startsWith("link rxe0/1 state ACTIVE physical_state LINK_UP mtu 1024 netdev eth0\n"
                + "    gid 0 fe80:0000:0000:0000:001d:a0ff:fe00:0001 ROCE_V2\n"
                + "    gid 1 0000:0000:0000:0000:0000:ffff:0a00:0001 ROCE_V2"), link);
        assertEquals("no RDMA resources", cmd.res());
        VerbsContext c = f.open();
        ProtectionDomain pd = c.allocPd();
        assertEquals("dev rxe0 ctx 0 pd 0 pdn " + pd.pdn() + " users 0", cmd.res());
        f.core.close();
        assertEquals("no RDMA devices", cmd.dev());
    }
}
