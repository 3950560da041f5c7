package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Reserved VRAM as {@code drivers/gpu/drm/amd/amdgpu/amdgpu_vram_mgr.c} keeps it ({@code amdgpu_vram_mgr_reserve_range}
 * takes the range out of {@code drm_buddy} before any allocation): the VRAM manager hands out every page of the
 * window and beyond except the driver's reserved ranges, and {@link VramInfo} refuses ranges that are not whole
 * pages inside the VRAM or that overlap.
 */
class VramManagerTest {
    private static final long KIB = 1024;
    private static final long MIB = 1024 * KIB;

    private final Machine machine;
    private final PciFunction fn;

    VramManagerTest() throws IOException {
        try (InputStream in = VramManagerTest.class.getResourceAsStream("/dev/dmaplane/accel/accel-test.yaml")) {
            machine = Machine.boot(TopologyLoader.load(new String(in.readAllBytes(), StandardCharsets.UTF_8),
                    TopologyLoader.Format.YAML), Machine.Options.DEFAULT.withClassPathModels(false));
        }
        fn = machine.pci().function("0000:01:00.0");
    }

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void reservedRangesAreNeverHandedOut() {
        VramInfo.Range inWindow = new VramInfo.Range(MIB, 256 * KIB);
        VramInfo.Range beyondWindow = new VramInfo.Range(4 * MIB, MIB);
        VramInfo info = new VramInfo(fn, 2, 6 * MIB, 2 * MIB, List.of(beyondWindow, inWindow));
        assertEquals(List.of(inWindow, beyondWindow), info.reserved(), "kept in offset order");
        VramManager vram = new VramManager(P2pDma.of(machine), info);
        assertEquals(6 * MIB - 1280 * KIB, vram.available());
        assertEquals(2 * MIB - 256 * KIB, vram.visibleAvailable());

        List<VramManager.Range> got = new ArrayList<>();
        for (boolean visible : new boolean[] {false, true}) {
            for (VramManager.Range r = vram.alloc(64 * KIB, visible); r != null; r = vram.alloc(64 * KIB, visible)) {
                got.add(r);
            }
        }
        assertEquals(0, vram.available(), "everything not reserved was handed out");
        assertEquals((6 * MIB - 1280 * KIB) / (64 * KIB), got.size());
        for (VramManager.Range r : got) {
            for (VramInfo.Range res : info.reserved()) {
                assertTrue(r.offset() + r.size() <= res.offset() || r.offset() >= res.end(),
                        String.format("range %#x+%#x overlaps reserved %s", r.offset(), r.size(), res));
            }
        }
    }

    @Test
    void badReservedRangesAreEinval() {
        List<List<VramInfo.Range>> bad = List.of(
                List.of(new VramInfo.Range(100, 4096)),
                List.of(new VramInfo.Range(0, 0)),
                List.of(new VramInfo.Range(6 * MIB - 4096, 8192)),
                List.of(new VramInfo.Range(Long.MAX_VALUE - 4095, 4096)),
                List.of(new VramInfo.Range(0, 2 * 4096), new VramInfo.Range(4096, 4096)),
                List.of(new VramInfo.Range(0, 2 * MIB)));
        for (List<VramInfo.Range> ranges : bad) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> new VramInfo(fn, 2, 6 * MIB, 2 * MIB, ranges),
                    ranges.toString());
            assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
        }
    }
}
