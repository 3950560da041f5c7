package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDebug;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.dmabuf.heap.Udmabuf;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.testing.NullArguments;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static dev.dmaplane.testing.NullArguments.machine;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15 ("every public entry point answers bad arguments with an errno, never a NullPointerException") over
 * dmabuf-interop's exported packages, swept by {@link NullArguments}: every public constructor and static method, and
 * the instance methods of the machine's {@link DmaBufs}, {@link P2pDma}, the heaps and a system-heap {@link DmaBuf},
 * refuse a null reference with {@code EINVAL}.
 */
class NullArgumentsTest {
    private static final String[] EXPORTED = {
        "dev.dmaplane.dmabuf", "dev.dmaplane.dmabuf.heap", "dev.dmaplane.fence", "dev.dmaplane.p2pdma",
    };

    @Test
    void nullArgumentsAreEinval() {
        NullArguments.Report r = NullArguments.withFrameworkSamples()
                .sample(DmaBufs.class, s -> DmaBufs.of(machine(s)))
                .sample(DmaDebug.class, s -> machine(s).dmaDebug())
                .sample(Duration.class, s -> Duration.ofMillis(1))
                .receiver(DmaBufs.class, s -> DmaBufs.of(machine(s)))
                .receiver(P2pDma.class, s -> P2pDma.of(machine(s)))
                .receiver(SystemHeap.class, s -> new SystemHeap(DmaBufs.of(machine(s))))
                .receiver(Udmabuf.class, s -> new Udmabuf(DmaBufs.of(machine(s))))
                .receiver(DmaBuf.class, s -> new SystemHeap(DmaBufs.of(machine(s))).allocate(4096))
                // Documented as taking null: a registry without heaps, a fence context without tracing, the
                // generic reason of a retired mapping; an importer's missing move_notify is refused by attach.
                .nullable("DmaBufs.<init>", 2)
                .nullable("FenceContext.allocate", 2)
                .nullable("DmaBuf.retireMappings", 1)
                .nullable("Importer.<init>", 1)
                // Called by the core when a buffer's last reference went, never with a caller's value.
                .exclude("DmaBufs.forget")
                // Verdicts and mappings the p2pdma core makes and hands out.
                .exclude("P2pDistance")
                .exclude("P2pPath")
                .exclude("P2pAllocation")
                .exclude("P2pMapping")
                // Reworked by another change; swept once that lands.
                .exclude("VramExporter")
                .sweep(DmaBufs.class, EXPORTED);

        assertEquals(List.of(), r.violations(), "entry points answering a null other than with EINVAL");
        assertTrue(r.cases() >= 30, "the sweep tried only " + r.cases() + " cases; skipped: " + r.skipped());
    }
}
