package dev.dmaplane.rdma;

import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.testing.NullArguments;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15 ("every public entry point answers bad arguments with an errno, never a NullPointerException") over
 * rdma-core's exported packages, swept by {@link NullArguments}: every public constructor and static method, and the
 * verbs of {@link RdmaCore}, {@link RdmaDevice}, {@link VerbsContext}, {@link ProtectionDomain} and
 * {@link CompletionQueue} on the loopback {@link Fixture}, refuse a null reference with {@code EINVAL}.
 */
class NullArgumentsTest {
    private static final String[] EXPORTED = {"dev.dmaplane.rdma", "dev.dmaplane.rdma.spi", "dev.dmaplane.rdma.verbs"};

    @Test
    void nullArgumentsAreEinval() {
        NullArguments.Report r = NullArguments.withFrameworkSamples()
                .sample(Fixture.class, s -> s.closeLater(new Fixture()))
                .sample(AddressSpace.class, s -> fixture(s).mm)
                .sample(RdmaCore.class, s -> fixture(s).core)
                .sample(Gid.class, s -> Gid.parse("fe80::1"))
                .sample(Duration.class, s -> Duration.ZERO)
                .receiver(RdmaCore.class, s -> fixture(s).core)
                .receiver(RdmaDevice.class, s -> fixture(s).device())
                .receiver(VerbsContext.class, s -> fixture(s).open())
                .receiver(ProtectionDomain.class, s -> fixture(s).open().allocPd())
                .receiver(CompletionQueue.class, s -> fixture(s).open().createCq(16, null, 0))
                // ibv_bind_mw: a bind with no MR (and length 0) unbinds the window; a UD destination's
                // missing AH is refused by post_send, which knows the QP type.
                .nullable("MwBindInfo.<init>", 0)
                .nullable("UdDestination.<init>", 0)
                // an iWARP connect or accept without private data sends none (iw_cm_conn_param.private_data NULL)
                .nullable("IwConnParam.<init>", 0)
                // What the core and providers report, never built from an application's input: completions,
                // the provider's access and receive verdicts, device attributes, rdma resource rows, GID entries,
                // iWARP connection events.
                .exclude("WorkCompletion")
                .exclude("AccessFault")
                .exclude("RecvResult")
                .exclude("DeviceAttr")
                .exclude("ResourceEntry")
                .exclude("GidEntry")
                .exclude("IwCmEvent")
                .sweep(RdmaCore.class, EXPORTED);

        assertEquals(List.of(), r.violations(), "entry points answering a null other than with EINVAL");
        assertTrue(r.cases() >= 20, "the sweep tried only " + r.cases() + " cases; skipped: " + r.skipped());
    }

    private static Fixture fixture(NullArguments.Scope s) throws Exception {
        return s.shared(Fixture.class, x -> x.closeLater(new Fixture()));
    }
}
