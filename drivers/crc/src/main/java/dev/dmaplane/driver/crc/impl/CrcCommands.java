package dev.dmaplane.driver.crc.impl;

import dev.dmaplane.driver.crc.CrcOffload;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.zip.CRC32C;

/** Gogo {@code crc:run SIZE}: a CRC32C through every bound engine, checked against software (as tcrypt does). */
@Component(service = CrcCommands.class, property = {"osgi.command.scope=crc", "osgi.command.function=run"})
public final class CrcCommands {
    private final Machine machine;
    @Reference(cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC)
    private volatile List<CrcOffload> engines;

    @Activate
    public CrcCommands(@Reference Machine machine) {
        this.machine = machine;
    }

    /**
     * One line per engine with the CRC32C of {@code size} bytes, byte {@code i} being {@code (byte) (31 * i + 7)},
     * in freshly allocated host pages, and whether it matches {@link CRC32C}.
     *
     * @throws ErrnoException {@code EINVAL} for a size outside 1 byte..2 MiB, {@code ENODEV} with no engine bound
     */
    public String run(int size) {
        if (size < 1 || size > HostMemory.HUGE_PAGE_SIZE) {
            throw new ErrnoException(Errno.EINVAL, "crc:run size " + size + " outside 1.." + HostMemory.HUGE_PAGE_SIZE);
        }
        List<CrcOffload> bound = engines;
        if (bound == null || bound.isEmpty()) {
            throw new ErrnoException(Errno.ENODEV, "no CRC32C engine is bound");
        }
        HostMemory memory = machine.memory();
        int order = Math.max(0, 64 - Long.numberOfLeadingZeros((size - 1L) >> HostMemory.PAGE_SHIFT));
        long pfn = memory.allocPages(order);
        try {
            MemorySegment data = memory.slice(pfn << HostMemory.PAGE_SHIFT, size);
            for (int i = 0; i < size; i++) {
                data.set(ValueLayout.JAVA_BYTE, i, (byte) (31 * i + 7));
            }
            CRC32C software = new CRC32C();
            software.update(data.asByteBuffer());
            StringBuilder out = new StringBuilder();
            for (CrcOffload engine : bound) {
                int crc = engine.crc32c(pfn << HostMemory.PAGE_SHIFT, size, 0);
                out.append(String.format("%s crc32c 0x%08x of %d bytes, %s%n", engine.device(), crc, size,
                        crc == (int) software.getValue() ? "matches software" : "MISMATCH with software"));
            }
            return out.toString().strip();
        } finally {
            memory.putPage(pfn);
        }
    }
}
