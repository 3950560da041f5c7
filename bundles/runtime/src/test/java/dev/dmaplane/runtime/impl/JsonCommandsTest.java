package dev.dmaplane.runtime.impl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.runtime.impl.RuntimeComponentsTest.DEFAULT_BDFS;
import static dev.dmaplane.runtime.impl.RuntimeComponentsTest.GPU;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code -j} on the listing commands (issue 16, "Scripts"): one line of JSON each, in the manner of iproute2's
 * {@code rdma -j} ({@code rdma/utils.c} and {@code json_print.c}: one JSON document on one line), read back here with
 * Jackson as {@code jq} would read it, holding what the text listing shows.
 */
class JsonCommandsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    Machine machine;
    DriverBinder binder;
    DmaplaneCommands cmds;

    @BeforeEach
    void boot() {
        machine = RuntimeComponentsTest.bootWithModels();
        binder = new DriverBinder(machine);
        cmds = new DmaplaneCommands(machine, binder, DmaBufs.of(machine));
        binder.bindDriver(new RuntimeComponentsTest.GpuDriver("gpu", machine), null);
    }

    @AfterEach
    void close() {
        binder.deactivate();
        machine.close();
    }

    private static JsonNode parse(String json) throws Exception {
        assertEquals(1, json.lines().count(), "one line: " + json);
        return JSON.readTree(json);
    }

    private static List<String> texts(JsonNode array, String field) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.get(field).asText()));
        return out;
    }

    @Test
    void lspciDevicesAndDriversParseAsJson() throws Exception {
        JsonNode lspci = parse(cmds.lspci("-j"));
        assertEquals(DEFAULT_BDFS, texts(lspci, "slot"));
        JsonNode gpu = lspci.get(DEFAULT_BDFS.indexOf(GPU));
        assertEquals("030200", gpu.get("class").asText());
        assertEquals("1da0", gpu.get("vendor").asText());
        assertEquals("gpu", gpu.get("driver").asText());
        assertEquals("gpu", gpu.get("model").asText());
        assertEquals("0000:02:00.0", gpu.get("parent").asText());
        assertEquals(machine.iommu().groupOf(machine.pci().function(GPU)).orElseThrow().id(), gpu.get("iommuGroup").asInt());
        assertTrue(lspci.get(DEFAULT_BDFS.indexOf("0000:06:00.0")).get("driver").isNull());

        JsonNode devices = parse(cmds.devices("-j"));
        assertEquals(machine.devices().devices().size(), devices.size());
        JsonNode gpuDevice = devices.findParents("name").stream().filter(n -> n.get("name").asText().equals(GPU))
                .findFirst().orElseThrow();
        assertEquals("pci", gpuDevice.get("bus").asText());
        assertEquals("gpu", gpuDevice.get("driver").asText());
        assertTrue(gpuDevice.get("devres").isInt(), gpuDevice.toString());
        assertEquals("0000:02:00.0", gpuDevice.get("parent").asText());

        JsonNode drivers = parse(cmds.drivers("-j"));
        assertEquals(List.of("gpu"), texts(drivers, "name"));
        assertEquals(1, drivers.get(0).get("bound").size());
        assertEquals(GPU, drivers.get(0).get("bound").get(0).asText());
        assertEquals("pci class 030200/ffff00", drivers.get(0).get("matches").get(0).asText());
        assertEquals("?", drivers.get(0).get("bundle").asText(), "as the text listing: a service reference without a bundle");
    }

    @Test
    void iommuDmadebugMemoryAndDmabufParseAsJson() throws Exception {
        PciFunction hca = machine.pci().function("0000:05:00.0");
        hca.setMaster(true);
        long pfn = machine.memory().allocPages(0);
        long iova = hca.dma().mapSingle(pfn * HostMemory.PAGE_SIZE, 4096, DmaDirection.TO_DEVICE);

        JsonNode iommu = parse(cmds.iommu("-j"));
        assertTrue(iommu.get("enabled").asBoolean());
        assertEquals("dma", iommu.get("defaultDomainType").asText());
        assertEquals(machine.iommu().groups().size(), iommu.get("groups").size());
        assertTrue(iommu.get("groups").toString().contains("\"0000:05:00.0\""));
        assertTrue(iommu.get("domains").findValues("mappedBytes").stream().anyMatch(n -> n.asLong() == 4096));

        JsonNode debug = parse(cmds.dmadebug("-j"));
        assertEquals(1, debug.get("activeMappings").asInt());
        assertEquals(1, debug.get("activeMappingsByDevice").get("0000:05:00.0").asInt());
        assertEquals(0, debug.get("reports").size());

        JsonNode memory = parse(cmds.memory("-j"));
        assertEquals(64L << 30, memory.get("ramBytes").asLong());
        assertEquals(machine.memory().allocatedFrames(), memory.get("allocatedFrames").asLong());
        assertEquals(1, memory.get("activeDmaMappings").asInt());

        assertEquals(0, parse(cmds.dmabuf("-j")).size());
        DmaBuf buf = new SystemHeap(DmaBufs.of(machine)).allocate(8192);
        buf.setName("frames");
        buf.attach(hca, null);
        JsonNode bufs = parse(cmds.dmabuf("-j"));
        assertEquals(1, bufs.size());
        assertEquals(buf.ino(), bufs.get(0).get("ino").asLong());
        assertEquals(8192, bufs.get(0).get("size").asLong());
        assertEquals("system", bufs.get(0).get("exporter").asText());
        assertEquals("frames", bufs.get(0).get("name").asText());
        assertEquals("0000:05:00.0", bufs.get(0).get("attachments").get(0).get("device").asText());
        assertFalse(bufs.get(0).get("attachments").get(0).get("dynamic").asBoolean());

        buf.detach(buf.attachments().getFirst());
        buf.put();
        hca.dma().unmapSingle(iova, 4096, DmaDirection.TO_DEVICE);
        machine.memory().putPage(pfn);
    }

    @Test
    void anotherOptionIsEinvalNamingIt() {
        for (String command : List.of("devices", "drivers", "memory", "dmabuf")) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> {
                switch (command) {
                    case "devices" -> cmds.devices("-J");
                    case "drivers" -> cmds.drivers("-J");
                    case "memory" -> cmds.memory("-J");
                    default -> cmds.dmabuf("-J");
                }
            });
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains("dmaplane:" + command + ": bad option '-J'; usage: dmaplane:" + command
                    + " [-j]"), e.getMessage());
        }
        assertTrue(assertThrows(ErrnoException.class, () -> cmds.dmadebug("-J")).getMessage().contains("[-v | -j]"));
        assertTrue(assertThrows(ErrnoException.class, () -> cmds.iommu("-J")).getMessage().contains("mappings | -j]"));
        assertTrue(assertThrows(ErrnoException.class, () -> cmds.lspci("-J")).getMessage().contains("[-j] [BDF]"));
    }
}
