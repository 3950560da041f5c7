package dev.dmaplane.testing;

import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;

/**
 * The fixture of the mm tests: one process's {@code struct mm_struct} ({@link AddressSpace}) over 64 MiB of host
 * memory of its own, with the tracer it reports to; a test class extends it and the address space and the memory
 * are closed after each test.
 */
public abstract class ProcessMm {
    /** {@code PAGE_SIZE}, as an {@code int} for buffer sizes. */
    protected static final int PAGE = (int) HostMemory.PAGE_SIZE;

    /** The host memory the process's pages come from. */
    protected final HostMemory mem = new HostMemory(64L << 20);
    /** The tracer the address space reports faults, pins and invalidations to. */
    protected final Tracer tracer = new Tracer();
    /** The process's address space. */
    protected final AddressSpace as;

    /** An address space named {@code proc1}. */
    protected ProcessMm() {
        this("proc1");
    }

    /** An address space named {@code name} (the name its trace events carry). */
    protected ProcessMm(String name) {
        as = new AddressSpace(mem, tracer, name);
    }

    @AfterEach
    void closeProcessMm() {
        as.close();
        mem.close();
    }
}
