package dev.dmaplane.driver.gpu.model;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * An engine's command processor (amdgpu's packet decode in front of its SDMA and compute units): checks a fetched
 * descriptor's opcode, flags and VM against the engine's class and runs it in its VM.
 */
final class CommandProcessor {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;
    private final long engineClass;
    private final GpuMmu mmu;
    private final Tlb tlb;
    private final Apertures apertures;
    private final GpuVm.Abort abort;
    private final CopyOps copyOps = new CopyOps();
    private final Kernels kernels = new Kernels();

    CommandProcessor(String name, long engineClass, GpuMmu mmu, Tlb tlb, Apertures apertures, GpuVm.Abort abort) {
        this.name = name;
        this.engineClass = engineClass;
        this.mmu = mmu;
        this.tlb = tlb;
        this.apertures = apertures;
        this.abort = abort;
    }

    /** Decodes the descriptor and runs it; a bad descriptor or a fault ends it with a {@link JobFault}. */
    void execute(MemorySegment desc, int vm) {
        int op = desc.get(U32, DESC_OPCODE);
        int flags = desc.get(U32, DESC_FLAGS);
        if ((flags & ~(FLAG_INTERRUPT | FLAG_PHYSICAL)) != 0) {
            throw JobFault.badDesc(String.format("unknown flags %#x", flags));
        }
        if (vm < 0 || vm >= VM_COUNT || (vm == 0) != ((flags & FLAG_PHYSICAL) != 0) || (vm != 0 && mmu.root(vm) == 0)) {
            throw JobFault.badDesc("VM " + Integer.toUnsignedString(vm) + " with flags " + flags
                    + " is not a VM this job may use");
        }
        GpuVm space = new GpuVm(mmu, tlb, apertures, vm, abort);
        long a0 = desc.get(U64, DESC_ARG0);
        long a1 = desc.get(U64, DESC_ARG1);
        long a2 = desc.get(U64, DESC_ARG2);
        boolean copyClass = engineClass == CLASS_COPY;
        if (op == OP_COPY && copyClass) {
            copyOps.copy(space, a0, a1, a2);
        } else if (op == OP_FILL && copyClass) {
            copyOps.fill(space, a0, a1, (int) a2);
        } else if (op == OP_KERNEL && !copyClass) {
            kernels.run(space, a0, a1, a2, desc.get(U64, DESC_ARG3), desc.get(U64, DESC_ARG4));
        } else {
            throw JobFault.badDesc("opcode " + op + " is not run by engine " + name);
        }
    }
}
