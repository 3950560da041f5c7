package dev.dmaplane.vfio;

import dev.dmaplane.testing.NullArguments;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static dev.dmaplane.testing.NullArguments.machine;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15 ("every public entry point answers bad arguments with an errno, never a NullPointerException") over
 * vfio-emu's exported packages, swept by {@link NullArguments}: every public constructor and static method, and the
 * instance methods of the machine's {@link Vfio} and of a process's {@link VfioUser}, refuse a null reference with
 * {@code EINVAL}.
 */
class NullArgumentsTest {
    private static final String[] EXPORTED = {"dev.dmaplane.vfio", "dev.dmaplane.vfio.nvme", "dev.dmaplane.vfio.iommufd"};

    @Test
    void nullArgumentsAreEinval() {
        NullArguments.Report r = NullArguments.withFrameworkSamples()
                .sample(Vfio.class, s -> Vfio.of(machine(s)))
                .sample(Duration.class, s -> Duration.ofMillis(1))
                .sample(VfioUser.class, s -> Vfio.of(machine(s)).open(machine(s).newAddressSpace("null-args"), 1L << 30))
                .receiver(Vfio.class, s -> Vfio.of(machine(s)))
                .receiver(VfioUser.class, s -> Vfio.of(machine(s)).open(machine(s).newAddressSpace("null-args"), 1L << 30))
                .sweep(Vfio.class, EXPORTED);

        assertEquals(List.of(), r.violations(), "entry points answering a null other than with EINVAL");
        assertTrue(r.cases() >= 10, "the sweep tried only " + r.cases() + " cases; skipped: " + r.skipped());
    }
}
