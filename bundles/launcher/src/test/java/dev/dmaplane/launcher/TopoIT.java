package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ./dmaplane topo --dot FILE}: the runtime boots on the default machine and {@code dmaplane:topo} writes the
 * picture's DOT into FILE (Graphviz's DOT language, graphviz.org/doc/info/lang.html): every function of the default
 * machine, its IOMMU groups as clusters; then the runtime stops with nothing left running.
 */
class TopoIT {
    @TempDir
    Path tmp;

    @Test
    void topoWritesTheDefaultMachinesPictureAsDot() throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        Path dot = tmp.resolve("default machine.dot");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        String[] args = {"topo", "--dot", dot.toString(), "--work", tmp.resolve("work").toString(), "--dist",
                RuntimeIT.DIST.toString()};
        assertEquals(0, Main.run(args, new PrintStream(out, true, UTF_8), new PrintStream(err, true, UTF_8)),
                err.toString(UTF_8));
        String text = Files.readString(dot);
        assertTrue(text.startsWith("graph") || text.startsWith("digraph") || text.startsWith("strict"), text);
        for (String bdf : new String[]{"0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:06:00.0"}) {
            assertTrue(text.contains(bdf), bdf + " drawn: " + text);
        }
        assertTrue(text.contains("cluster_iommu_group_"), "IOMMU groups as clusters");
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(10));
    }
}
