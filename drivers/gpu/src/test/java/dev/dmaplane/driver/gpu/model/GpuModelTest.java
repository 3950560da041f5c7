package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The model's settings from the machine file ({@code docs/WRITING-A-DRIVER.md}, section 2: a model refusing a function
 * leaves it absent and says why): {@code vramBar} must name a device-memory BAR and {@code vramSize} be a size of at
 * least that BAR, a multiple of 2 MiB; without {@code vramSize} the VRAM is the BAR.
 */
class GpuModelTest {
    private static String machine(String properties) throws IOException {
        try (InputStream in = GpuModelTest.class.getResourceAsStream("gpu-machine.yaml")) {
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            String line = "properties: { vramBar: 2, vramSize: 1GiB }";
            assertTrue(text.contains(line));
            return text.replace(line, properties);
        }
    }

    /** Boots the variant, adds the model and returns the GPU's absence reason, or "" if it came up. */
    private static String absence(String properties, long expectVram) throws IOException {
        try (Machine m = Machine.boot(TopologyLoader.load(machine(properties), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false))) {
            m.addModel(new GpuModel());
            PciFunction fn = m.pci().function(GpuRig.GPU);
            if (fn.isPresent()) {
                fn.setMemorySpace(true);
                assertEquals(expectVram, fn.bar(0).orElseThrow().mmio().read(GpuRegs.REG_VRAM_SIZE, 8));
            }
            return fn.absence().orElse("");
        }
    }

    @Test
    void vramSizeDefaultsToTheBarAndMayExceedIt() throws IOException {
        assertEquals("", absence("properties: { vramBar: 2 }", 256L << 20));
        assertEquals("", absence("properties: { vramSize: 4GiB }", 4L << 30));
        assertEquals("", absence("# no properties", 256L << 20));
    }

    @Test
    void badSettingsLeaveTheGpuAbsentNamingTheValue() throws IOException {
        assertTrue(absence("properties: { vramSize: 128MiB }", 0).contains("vramSize 134217728 is smaller"));
        assertTrue(absence("properties: { vramSize: lots }", 0).contains("vramSize 'lots'"));
        assertTrue(absence("properties: { vramSize: 300MiB+1 }", 0).contains("'300MiB+1'"));
        assertTrue(absence("properties: { vramSize: 257MiB }", 0).contains("vramSize 257MiB is not a multiple"));
        assertTrue(absence("properties: { vramBar: 0 }", 0).contains("BAR"), "BAR0 holds registers, not VRAM");
        assertTrue(absence("properties: { vramBar: two }", 0).contains("vramBar 'two'"));
    }

    /**
     * The model declares its engines' 44 address bits (amdgpu's {@code DMA_BIT_MASK(44)} for GFX9,
     * {@code Documentation/core-api/dma-api-howto.rst}: the mask describes what the device can address).
     */
    @Test
    void theGpuDrives44AddressBits() throws IOException {
        try (Machine m = Machine.boot(TopologyLoader.load(machine("properties: { vramBar: 2 }"), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false))) {
            PciFunction fn = m.pci().function(GpuRig.GPU);
            assertEquals(64, fn.dmaAddressBits(), "absent: nothing declared it");
            m.addModel(new GpuModel());
            assertEquals(44, fn.dmaAddressBits());
        }
    }
}
