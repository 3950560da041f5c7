package dev.dmaplane.runtime.topo;

import dev.dmaplane.testing.NullArguments;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15 ("every public entry point answers bad arguments with an errno, never a NullPointerException") over the
 * runtime bundle's exported package, swept by {@link NullArguments}: the topology snapshot, its DOT rendering and
 * the Graphviz runner refuse a null reference with {@code EINVAL}.
 */
class NullArgumentsTest {
    @Test
    void nullArgumentsAreEinval() {
        NullArguments.Report r = NullArguments.withFrameworkSamples()
                .sample(Duration.class, s -> Duration.ofSeconds(1))
                .receiver(Graphviz.class, s -> Graphviz.onPath())
                // a record's equals answers false for null, as Object.equals says
                .nullable("Graphviz.equals", 0)
                .sweep(Topology.class, "dev.dmaplane.runtime.topo");

        assertEquals(List.of(), r.violations(), "entry points answering a null other than with EINVAL");
        assertTrue(r.cases() >= 3, "the sweep tried only " + r.cases() + " cases; skipped: " + r.skipped());
    }
}
