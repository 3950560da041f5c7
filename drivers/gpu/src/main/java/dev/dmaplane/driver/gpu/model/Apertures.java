package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelDma;

import java.lang.foreign.MemorySegment;
import java.util.Optional;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * Physical accesses by aperture (amdgpu's VRAM and GART/system apertures): bit 63 set is a bus address reached by
 * DMA through the function's bus master, so the IOMMU checks each access; clear is a VRAM offset.
 */
final class Apertures {
    private final Vram vram;
    private final ModelDma dma;

    Apertures(Vram vram, ModelDma dma) {
        this.vram = vram;
        this.dma = dma;
    }

    Vram vram() {
        return vram;
    }

    /** What an access does with its buffer. */
    enum Access {
        /** Fill the buffer from memory. */
        READ,
        /** Store the buffer to memory. */
        WRITE,
        /**
         * Store zeros, the buffer's content: VRAM by a fast clear that commits none of the never-written VRAM (it
         * already reads as zeros), the SYSTEM aperture by DMA of the buffer; faults as {@link #WRITE}.
         */
        CLEAR;

        boolean writes() {
            return this != READ;
        }
    }

    /** Reads {@code dst.byteSize()} bytes at physical address {@code phys}. */
    void read(long phys, MemorySegment dst) {
        access(phys, dst, Access.READ);
    }

    /** Writes all of {@code src} at physical address {@code phys}. */
    void write(long phys, MemorySegment src) {
        access(phys, src, Access.WRITE);
    }

    /**
     * Copies {@code length} bytes from physical address {@code src} to {@code dst} as a DMA engine does, in place:
     * VRAM is read or written through live views, so a copy between VRAM and the SYSTEM aperture is one DMA of the
     * VRAM bytes (never-written VRAM goes out as zeros without being committed); only a SYSTEM-to-SYSTEM copy goes
     * through {@code staging} (the engine's buffer), as two DMAs. Faults as {@link #access}, at the first refused byte.
     */
    void copy(long src, long dst, long length, MemorySegment staging) {
        boolean fromSystem = (src & APERTURE_SYSTEM) != 0;
        boolean toSystem = (dst & APERTURE_SYSTEM) != 0;
        if (!fromSystem && !vram.contains(src, length)) {
            throw JobFault.pageFault(src, FAULT_RANGE, false, String.format("VRAM %#x+%#x beyond %#x bytes of VRAM",
                    src, length, vram.size()));
        }
        if (!toSystem && !vram.contains(dst, length)) {
            throw JobFault.pageFault(dst, FAULT_RANGE, true, String.format("VRAM %#x+%#x beyond %#x bytes of VRAM",
                    dst, length, vram.size()));
        }
        long done = 0;
        while (done < length) {
            long s = src + done;
            long d = dst + done;
            long n = length - done;
            if (!fromSystem) {
                n = Math.min(n, vram.chunkRemaining(s));
            }
            if (!toSystem) {
                n = Math.min(n, vram.chunkRemaining(d));
            }
            if (fromSystem && toSystem) {
                MemorySegment part = staging.asSlice(0, Math.min(n, staging.byteSize()));
                access(s, part, Access.READ);
                access(d, part, Access.WRITE);
                n = part.byteSize();
            } else if (fromSystem) {
                access(s, vram.writeView(d, n), Access.READ);
            } else {
                Optional<MemorySegment> from = vram.readView(s, n);
                if (from.isPresent() && toSystem) {
                    access(d, from.get(), Access.WRITE);
                } else if (from.isPresent()) {
                    MemorySegment.copy(from.get(), 0, vram.writeView(d, n), 0, n);
                } else if (toSystem) {
                    n = Math.min(n, staging.byteSize());
                    MemorySegment zeros = staging.asSlice(0, n);
                    zeros.fill((byte) 0);
                    access(d, zeros, Access.WRITE);
                } else {
                    vram.zero(d, n);
                }
            }
            done += n;
        }
    }

    /** Reads into, writes from or clears {@code buf.byteSize()} bytes at physical address {@code phys}. */
    void access(long phys, MemorySegment buf, Access access) {
        boolean write = access.writes();
        if ((phys & APERTURE_SYSTEM) != 0) {
            long bus = phys & ~APERTURE_SYSTEM;
            DmaStatus st = write ? dma.write(bus, buf) : dma.read(bus, buf);
            if (st instanceof DmaStatus.Fault f) {
                throw new JobFault(ST_DMA_FAULT, f.busAddr() | APERTURE_SYSTEM, 0, write,
                        String.format("SYSTEM %s at %#x refused: %s (%s)", write ? "write" : "read", f.busAddr(),
                                f.errno(), f.reason()));
            }
        } else if (!vram.contains(phys, buf.byteSize())) {
            throw JobFault.pageFault(phys, FAULT_RANGE, write, String.format("VRAM %#x+%#x beyond %#x bytes of VRAM",
                    phys, buf.byteSize(), vram.size()));
        } else {
            switch (access) {
                case READ -> vram.read(phys, buf);
                case WRITE -> vram.write(phys, buf);
                case CLEAR -> vram.zero(phys, buf.byteSize());
            }
        }
    }
}
