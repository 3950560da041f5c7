package dev.dmaplane.nvmeuser;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ./dmaplane nvme gds}: one checked GPUDirect-Storage read, run as the script runs it ({@link Main#run}). On the
 * shipped gds-p2p-machine.yaml the NVMe's data goes into the GPU's VRAM through IOMMU_IOAS_MAP_FILE of its dma-buf
 * (drivers/iommu/iommufd/pages.c {@code iopt_map_dmabuf}, beyond today's kernel for a GPU's buffer) with 0 host
 * bytes per delivered byte; on the default machine {@code pci_p2pdma_distance} (drivers/pci/p2pdma.c) finds no path,
 * so {@code --direct} is EOPNOTSUPP with its reason and the plain run bounces.
 */
class NvmeGdsTest {
    private record Run(int status, String out, String err) {
    }

    private static Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void directOnThePeerMachineLandsInVramWithNoHostByte() {
        Run r = run("gds", "--direct", "--p2p-machine", "-o", "262144");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("p2pdma:     THRU_HOST_BRIDGE"), r.out());
        assertTrue(r.out().contains("path:       " + GpuDirectStorage.DIRECT), r.out());
        assertTrue(r.out().contains("bounced:    0 bytes in 0 bounce(s); host bytes per delivered byte 0.00"), r.out());
        assertTrue(r.out().contains("NVMe DMA:   262144 bytes into peer BARs"), r.out());
        assertTrue(r.out().contains("data check: 262144 bytes match"), r.out());
    }

    @Test
    void theDefaultMachineBouncesAndRefusesTheDirectPathWithItsReason() {
        Run direct = run("gds", "--direct", "-o", "65536");
        assertEquals(1, direct.status(), direct.out());
        assertTrue(direct.err().startsWith("dmaplane nvme gds: EOPNOTSUPP: GDS direct: no peer path")
                && direct.err().contains("pci_p2pdma_distance"), direct.err());
        assertEquals("", direct.out(), "no report");

        Run bounce = run("gds", "-o", "65536");
        assertEquals(0, bounce.status(), bounce.err());
        assertTrue(bounce.out().contains("path:       " + GpuDirectStorage.BOUNCE), bounce.out());
        assertTrue(bounce.out().contains("bounced:    65536 bytes") && bounce.out().contains("1.00"), bounce.out());
        assertTrue(bounce.out().contains("data check: 65536 bytes match"), bounce.out());
        assertEquals(1, run("gds", "-o", "0").status(), "a size of 0");
    }
}
