package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeAdmin;
import dev.dmaplane.vfio.nvme.NvmeCommand;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.atomic.LongAdder;

/**
 * The controller's log pages (NVM Express Base Specification 2.0, 5.16.1.2 Error Information, 5.16.1.3 SMART /
 * Health Information): the newest errors first, guarded by the controller's lock, and the I/O counters, which the
 * command engines add to without it.
 */
final class Health {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** 300 K, the composite temperature reported. */
    private static final int TEMPERATURE_KELVIN = 300;

    private final Deque<byte[]> errors = new ArrayDeque<>();
    private long errorCount;
    private final LongAdder bytesRead = new LongAdder();
    private final LongAdder bytesWritten = new LongAdder();
    private final LongAdder reads = new LongAdder();
    private final LongAdder writes = new LongAdder();

    /** A command of {@code sqid} that failed with {@code status}: a new Error Information entry. */
    void error(int sqid, NvmeCommand c, int status) {
        MemorySegment e = MemorySegment.ofArray(new byte[NvmeAdmin.ERROR_ENTRY_SIZE]);
        e.set(U64, NvmeAdmin.ERR_COUNT, ++errorCount);
        e.set(U16, NvmeAdmin.ERR_SQID, (short) sqid);
        e.set(U16, NvmeAdmin.ERR_CID, (short) c.cid());
        e.set(U16, NvmeAdmin.ERR_STATUS, (short) (status << 1));
        e.set(U16, NvmeAdmin.ERR_STATUS + 2, (short) 0xffff); // parameter error location: not given
        e.set(U64, NvmeAdmin.ERR_LBA, sqid == 0 ? 0 : c.slba());
        e.set(U32, NvmeAdmin.ERR_NSID, c.nsid());
        errors.addFirst(e.toArray(ValueLayout.JAVA_BYTE));
        while (errors.size() > Controller.ELPE + 1) {
            errors.removeLast();
        }
    }

    void read(long bytes) {
        reads.increment();
        bytesRead.add(bytes);
    }

    void written(long bytes) {
        writes.increment();
        bytesWritten.add(bytes);
    }

    /** The Error Information log: {@code ELPE + 1} entries, newest first, unused ones zero. */
    byte[] errorLog() {
        byte[] log = new byte[(Controller.ELPE + 1) * NvmeAdmin.ERROR_ENTRY_SIZE];
        int i = 0;
        for (byte[] e : errors) {
            System.arraycopy(e, 0, log, i++ * NvmeAdmin.ERROR_ENTRY_SIZE, e.length);
        }
        return log;
    }

    /** The SMART / Health Information log; data units are thousands of 512-byte units, rounded up. */
    byte[] smartLog() {
        MemorySegment s = MemorySegment.ofArray(new byte[NvmeAdmin.SMART_SIZE]);
        s.set(U16, NvmeAdmin.SMART_TEMPERATURE, (short) TEMPERATURE_KELVIN);
        s.set(ValueLayout.JAVA_BYTE, NvmeAdmin.SMART_AVAILABLE_SPARE, (byte) 100);
        s.set(ValueLayout.JAVA_BYTE, NvmeAdmin.SMART_AVAILABLE_SPARE + 1, (byte) 10);
        s.set(U64, NvmeAdmin.SMART_DATA_UNITS_READ, (bytesRead.sum() / 512 + 999) / 1000);
        s.set(U64, NvmeAdmin.SMART_DATA_UNITS_WRITTEN, (bytesWritten.sum() / 512 + 999) / 1000);
        s.set(U64, NvmeAdmin.SMART_HOST_READS, reads.sum());
        s.set(U64, NvmeAdmin.SMART_HOST_WRITES, writes.sum());
        s.set(U64, NvmeAdmin.SMART_POWER_CYCLES, 1);
        s.set(U64, NvmeAdmin.SMART_ERROR_LOG_ENTRIES, errorCount);
        return s.toArray(ValueLayout.JAVA_BYTE);
    }
}
