package dev.dmaplane.accel;

import dev.dmaplane.accel.impl.AccelCommands;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.EnumSet;

import static dev.dmaplane.accel.SubmitTest.VA;
import static dev.dmaplane.accel.SubmitTest.awaitOk;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The {@code accel:} Gogo commands, called directly: devices with VRAM figures and engines, each context's objects
 * with placement ({@code /sys/kernel/debug/dri/N/gem}), each context's fdinfo keys
 * ({@code Documentation/gpu/drm-usage-stats.rst}).
 */
class AccelCommandsTest {
    private final AccelRig rig = new AccelRig();
    private final AccelCommands cmd = new AccelCommands(rig.core);

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    @Test
    void devicesObjectsAndFdinfo() {
        assertEquals("accel0: driver testaccel on 0000:01:00.0 vram total 6144 KiB visible 2048 KiB free 6144 KiB"
                + " engines copy0(copy) copy1(copy)", cmd.devices());
        assertEquals("no accelerator contexts", cmd.objects());
        assertEquals("no accelerator device named accel7", cmd.fdinfo("accel7"));
        try (AccelContext ctx = rig.device.open()) {
            int v = ctx.createBo(8192, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
            int h = ctx.createBo(4096, Placement.HOST, EnumSet.of(Placement.HOST));
            ctx.pin(v);
            ctx.vmBind(h, 0, VA, 4096, true);
            awaitOk(ctx.submit(Submission.on(1, new Command.Fill(VA, 4096, 3)).writing(h)));
            assertEquals("""
                    accel0 ctx 0: 2 object(s)
                        handle 1 size 8192 placement visible_vram pinned mappings 0
                        handle 2 size 4096 placement host mappings 1""", cmd.objects("accel0"));
            String fd = cmd.fdinfo();
            assertTrue(fd.startsWith("""
                    accel0 ctx 0:
                        drm-driver:\ttestaccel
                        drm-client-id:\t0
                        drm-engine-copy0:\t0 ns
                        drm-engine-copy1:\t"""), fd);
            assertTrue(fd.contains("drm-total-vram:\t8 KiB\n") && fd.contains("drm-total-system:\t4 KiB\n")
                    && fd.endsWith("drm-active-system:\t0 KiB"), fd);
            assertTrue(cmd.devices().contains("free 6136 KiB"), cmd.devices());
        }
        rig.core.close();
        assertEquals("no accelerator devices", cmd.devices());
    }
}
