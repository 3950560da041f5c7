package dev.dmaplane.runtime.impl;

import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.runtime.topo.Graphviz;
import dev.dmaplane.runtime.topo.TopoRig;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Redraws the README's picture ({@code docs/topology.svg}) with {@code dmaplane:topo --svg FILE} on the default
 * machine as {@link TopoRig} sets it up (the GPU driver and an HCA driver bound, a PRIME export attached by both
 * HCAs, a heap buffer by the second), through the real Graphviz {@code dot}. Runs only when
 * {@code -Ddmaplane.docs.topology} names the SVG file to write; README.md gives the command line.
 */
class ReadmePictureTest {
    static final String PROPERTY = "dmaplane.docs.topology";

    @Test
    @EnabledIfSystemProperty(named = PROPERTY, matches = ".+")
    void drawTheReadmePicture() throws Exception {
        ExternalTool dot = ExternalTool.require("dot", "apt-get install graphviz (Debian, Ubuntu), dnf install graphviz");
        Path target = Path.of(System.getProperty(PROPERTY)).toAbsolutePath();
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            DriverBinder binder = new DriverBinder(rig.machine);
            try {
                DmaplaneCommands cmds = new DmaplaneCommands(rig.machine, binder, DmaBufs.of(rig.machine),
                        new Graphviz(dot.path().toString(), Duration.ofSeconds(60)), target.getParent());
                String said = cmds.topo("--svg", target.getFileName().toString());
                assertTrue(said.contains("as SVG"), said);
            } finally {
                binder.deactivate();
            }
        }
        assertTrue(Files.readString(target).contains("cluster_iommu_group_"), "the picture was written to " + target);
    }
}
