package dev.dmaplane.gpudirect;

import dev.dmaplane.accel.CreateFlag;
import dev.dmaplane.accel.Placement;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Access;

import java.util.EnumSet;

/**
 * [4] The fallbacks real users meet: NCCL's net plugins and libfabric's {@code FI_HMEM} providers export GPU memory
 * and try {@code ibv_reg_dmabuf_mr} first, and fall back (to another object, to a bounce buffer in host memory) when
 * it is refused. Each refusal has the errno the kernel gives ({@code amdgpu_gem_prime_export},
 * {@code ib_umem_dmabuf_get}, {@code ib_check_mr_access}, {@code dma_buf_get}) and leaves nothing registered, pinned
 * or attached.
 */
final class Fallbacks {
    static final long IOVA = 0x7a00_0000_0000L;

    private Fallbacks() {
    }

    static void run(Stage s) {
        Printout out = s.out;
        out.section(Scenario.FALLBACKS, "fallbacks: the dma-buf path tried first, a refusal named by its errno, then "
                + "the way round it");
        long objects = s.near.device.objectCount();
        long pinned = s.machine.memory().pinnedFrames();
        int bufs = DmaBufs.of(s.machine).list().size();
        long mib = 1L << 20;

        int priv = s.gpu.ctx.createBo(mib, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM),
                EnumSet.of(CreateFlag.VM_ALWAYS_VALID));
        refused(out, Errno.EPERM, "export of an object private to the GPU VM (VM_ALWAYS_VALID)",
                () -> s.gpu.ctx.primeExport(priv).put());
        s.gpu.ctx.closeBo(priv);
        int shared = s.gpu.ctx.createBo(mib, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM, Placement.HOST));
        DmaBuf buf = s.gpu.ctx.primeExport(shared);
        try {
            out.note("way round: the object created without VM_ALWAYS_VALID exports (dma-buf %d)", buf.ino());
            refused(out, Errno.EINVAL, "a region running past the dma-buf's end (offset 1 MiB - 4 KiB, 8 KiB)",
                    () -> s.near.dmabufMr(buf, mib - 4096, 8192, IOVA).destroy());
            refused(out, Errno.EINVAL, "remote write access without local write (IBV_ACCESS_REMOTE_WRITE alone)",
                    () -> s.near.pd.regDmabufMr(0, mib, IOVA, buf, Access.REMOTE_WRITE).destroy());
            var mr = s.near.dmabufMr(buf, 0, mib, IOVA);
            out.check(mr.dmabuf().isPresent(), "way round: the whole buffer with LOCAL_WRITE registers (rkey %#x)",
                    mr.rkey());
            mr.destroy();
        } finally {
            buf.put();
        }
        refused(out, Errno.EBADF, "a dma-buf whose last reference was put (a closed fd)",
                () -> s.near.dmabufMr(buf, 0, mib, IOVA).destroy());
        s.gpu.ctx.closeBo(shared);
        out.note("way round a GPU or HCA without dma-buf support at all: the bounce path of [1], through host memory");
        out.check(s.near.device.objectCount() == objects && s.machine.memory().pinnedFrames() == pinned
                        && DmaBufs.of(s.machine).list().size() == bufs,
                "the refusals left nothing: %d verbs objects on rxe0, %d pinned frames, %d dma-bufs, as before",
                s.near.device.objectCount(), s.machine.memory().pinnedFrames(), DmaBufs.of(s.machine).list().size());
    }

    private static void refused(Printout out, Errno expected, String what, Runnable attempt) {
        try {
            attempt.run();
            out.check(false, "%s: accepted, expected %s", what, expected);
        } catch (ErrnoException e) {
            out.check(e.errno() == expected, "%s: %s (%s)", what, e.errno(), e.getMessage());
        }
    }
}
