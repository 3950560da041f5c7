package dev.dmaplane.errno;

import dev.dmaplane.testing.NullArguments;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15 ("every public entry point answers bad arguments with an errno, never a NullPointerException") over the
 * framework's exported packages, swept by {@link NullArguments}: every public constructor and static method, and the
 * instance methods of the core objects a driver is handed, refuse a null reference with {@code EINVAL}.
 */
class NullArgumentsTest {
    private static final String[] EXPORTED = {
        "dev.dmaplane.trace", "dev.dmaplane.iommu", "dev.dmaplane.mm", "dev.dmaplane.machine",
        "dev.dmaplane.resource", "dev.dmaplane.irq", "dev.dmaplane.fs", "dev.dmaplane.mem", "dev.dmaplane.hw",
        "dev.dmaplane.hw.copyengine", "dev.dmaplane.dma", "dev.dmaplane.device", "dev.dmaplane.errno",
        "dev.dmaplane.pci", "dev.dmaplane.shell", "dev.dmaplane.dmaengine",
    };

    @Test
    void nullArgumentsAreEinval() {
        NullArguments.Report r = checker().sweep(ErrnoException.class, EXPORTED);

        assertEquals(List.of(), r.violations(), "entry points answering a null other than with EINVAL");
        assertTrue(r.cases() >= 80, "the sweep tried only " + r.cases() + " cases; skipped: " + r.skipped());
    }

    /** The framework's samples, and what in its packages takes null or is no caller's input. */
    static NullArguments checker() {
        return NullArguments.withFrameworkSamples()
                // Tracer.emit: a null device or detail is traced as "-" or "" (its javadoc).
                .nullable("Tracer.emit", 1)
                .nullable("Tracer.emit", 4)
                // An auxiliary device's platform data is optional, as auxiliary_device's is.
                .nullable("DeviceCore.addAuxDevice", 4)
                // The core's own wording of what is missing, never a caller's.
                .nullable("ErrnoException.requireNonNull", 1)
                // The error type itself: its errno is always one of the core's constants and its message may be absent.
                .exclude("ErrnoException.<init>")
                // Trace and fault reports: values the core makes and hands out, never built from a caller's input.
                .exclude("TraceEvent.<init>")
                .exclude("IommuFault.<init>")
                .exclude("DmaStatus.Fault.<init>")
                .exclude("DmaDebugReport.<init>")
                .exclude("DmaFaultException.<init>")
                .exclude("CoherentBuffer.<init>")
                // Routes answered by the machine's own PeerRouter and PciTopology.route, not by a caller.
                .exclude("PeerRouter.ToPeer.<init>")
                .exclude("PeerRouter.Refused.<init>")
                .exclude("PciRoute.Peer.<init>")
                .exclude("PciRoute.RootComplex.<init>")
                .exclude("PciRoute.Unsupported.<init>");
    }
}
