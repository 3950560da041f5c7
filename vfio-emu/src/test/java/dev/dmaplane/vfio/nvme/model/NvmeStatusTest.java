package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.dmaplane.vfio.nvme.NvmeAdmin.*;
import static dev.dmaplane.vfio.nvme.NvmeCommand.*;
import static dev.dmaplane.vfio.nvme.NvmeStatus.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Every status code the controller reports, each from the condition NVM Express Base Specification 2.0 (4.2.3.1
 * Generic Command Status, 4.2.3.2 Command Specific Status, 5.4 and 5.5 queue creation) and the NVM Command Set
 * Specification 1.0 (3.2) name for it, with the Do Not Retry bit as QEMU's {@code hw/nvme/ctrl.c} sets it; the
 * controller goes on after each.
 */
class NvmeStatusTest {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long BLOCKS = (1L << 30) / 512;

    private NvmeMachine m;
    private NvmeTestDriver.Bound d;
    private NvmeTestDriver.Buffer buf;

    @BeforeEach
    void boot() {
        m = new NvmeMachine(true);
        d = m.bound();
        buf = d.buffer(256 << 10);
    }

    @AfterEach
    void close() {
        try {
            NvmeCompletion ok = d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 8, buf.bus(), 0));
            assertTrue(ok.ok(), "the controller goes on after the error: " + ok);
        } finally {
            m.close();
        }
    }

    private static void assertStatus(int expected, NvmeCompletion c, String what) {
        assertEquals(name(expected), name(c.code()), what + ": " + c);
        assertTrue(c.dnr(), what + ": Do Not Retry");
    }

    @Test
    void invalidOpcode() {
        assertStatus(INVALID_OPCODE, d.admin(NvmeCommand.of(0x7f, 0, 0, 0, 0, 0, 0, 0)), "admin opcode 0x7f");
        assertStatus(INVALID_OPCODE, d.io(NvmeCommand.of(0x7e, 0, 1, 0, 0, 0, 0, 0)), "I/O opcode 0x7e");
    }

    @Test
    void invalidField() {
        assertStatus(INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_IDENTIFY, 0, 0, buf.bus(), 0, 0x55, 0, 0)), "CNS 0x55");
        assertStatus(INVALID_FIELD, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 257, buf.bus(), 0)),
                "257 blocks are over MDTS (2^5 pages of 4 KiB)");
        assertStatus(INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_CREATE_CQ, 0, 0, buf.bus(), 0, 15 << 16 | 2, 0, 0)),
                "PC 0 while CAP.CQR requires contiguous queues");
        assertStatus(INVALID_FIELD, d.io(new NvmeCommand(NVM_READ, 1 << 6, 0, 1, buf.bus(), 0, 0, 0, 7, 0, 0, 0)),
                "PSDT 1: SGLs are not supported");
        assertStatus(INVALID_FIELD, d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0, 0x77, 0, 0)), "feature 0x77");
    }

    @Test
    void commandIdConflict() {
        d.submit(d.admin, NvmeCommand.of(ADMIN_ASYNC_EVENT, 0x42, 0, 0, 0, 0, 0, 0));
        NvmeCompletion c = d.admin(NvmeCommand.of(ADMIN_IDENTIFY, 0x42, 0, buf.bus(), 0, CNS_CONTROLLER, 0, 0));
        assertStatus(COMMAND_ID_CONFLICT, c, "cid 0x42 is held by an outstanding Asynchronous Event Request");
        assertTrue(d.admin(NvmeCommand.of(ADMIN_IDENTIFY, 0x43, 0, buf.bus(), 0, CNS_CONTROLLER, 0, 0)).ok());
    }

    @Test
    void dataTransferError() {
        assertStatus(DATA_TRANSFER_ERROR, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 8, 0x7_0000_0000L, 0)),
                "a read into memory the IOMMU does not map");
        assertStatus(DATA_TRANSFER_ERROR, d.admin(NvmeCommand.of(ADMIN_IDENTIFY, 0, 0, 0x7_0000_0000L, 0,
                CNS_CONTROLLER, 0, 0)), "Identify data to unmapped memory");
        assertStatus(DATA_TRANSFER_ERROR, d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, 0, 24, buf.bus(), 0x7_0000_0000L)),
                "a PRP list the controller cannot fetch");
        assertStatus(DATA_TRANSFER_ERROR, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 8,
                m.fn.bar(0).orElseThrow().address(), 0)), "a DMA into the controller's own registers (CVE-2021-3929)");
    }

    @Test
    void invalidNamespace() {
        assertStatus(INVALID_NAMESPACE, d.io(NvmeCommand.readWrite(NVM_READ, 0, 2, 0, 8, buf.bus(), 0)), "nsid 2 of 1");
        assertStatus(INVALID_NAMESPACE, d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 0, 0, 8, buf.bus(), 0)), "nsid 0");
        assertStatus(INVALID_NAMESPACE, d.admin(NvmeCommand.of(ADMIN_IDENTIFY, 0, 5, buf.bus(), 0, CNS_NAMESPACE, 0, 0)),
                "Identify namespace 5");
    }

    @Test
    void lbaOutOfRange() {
        assertStatus(LBA_OUT_OF_RANGE, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, BLOCKS - 1, 2, buf.bus(), 0)),
                "the last block and one past it");
        assertStatus(LBA_OUT_OF_RANGE, d.io(NvmeCommand.readWrite(NVM_WRITE, 0, 1, -1L, 1, buf.bus(), 0)),
                "SLBA 2^64 - 1");
        assertStatus(LBA_OUT_OF_RANGE, d.io(NvmeCommand.of(NVM_WRITE_ZEROES, 0, 1, 0, 0, (int) BLOCKS, 0, 0)),
                "Write Zeroes at the end");
        buf.cpu().set(U64, 8, BLOCKS);
        buf.cpu().set(ValueLayout.JAVA_INT_UNALIGNED, 4, 1);
        assertStatus(LBA_OUT_OF_RANGE, d.io(NvmeCommand.of(NVM_DSM, 0, 1, buf.bus(), 0, 0, DSM_AD, 0)),
                "a Dataset Management range past the end");
    }

    @Test
    void invalidPrpOffset() {
        assertStatus(INVALID_PRP_OFFSET, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 8, buf.bus() + 2, 0)),
                "PRP1 not dword aligned");
        assertStatus(INVALID_PRP_OFFSET, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 16, buf.bus(), buf.bus() + 4096 + 512)),
                "PRP2 with an offset");
        long[] prp = d.prps(buf.bus(), 4 * 4096, 0);
        d.lists.cpu().set(U64, 8, buf.bus() + 2 * 4096 + 64);
        assertStatus(INVALID_PRP_OFFSET, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 32, prp[0], prp[1])),
                "a PRP list entry with an offset");
        assertStatus(INVALID_PRP_OFFSET, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 32, prp[0], prp[1] + 4)),
                "a PRP list pointer not qword aligned");
        long last = d.lists.dmaAddress() + 4096 - 8;
        d.lists.cpu().set(U64, 4096 - 8, d.lists.dmaAddress() + 8);
        for (int i = 1; i <= 3; i++) {
            d.lists.cpu().set(U64, 8L * i, buf.bus() + 4096L * i); // a good list, but 8 bytes into its page
        }
        assertStatus(INVALID_PRP_OFFSET, d.io(NvmeCommand.readWrite(NVM_READ, 0, 1, 0, 32, buf.bus(), last)),
                "a chain pointer that is not page aligned (one to itself would never end)");
        assertStatus(INVALID_PRP_OFFSET, d.admin(NvmeCommand.createCq(0, 2, 16, buf.bus() + 256, 1, true)),
                "a queue base that is not page aligned");
    }

    @Test
    void invalidQueueIdentifier() {
        assertStatus(INVALID_QUEUE_IDENTIFIER, d.admin(NvmeCommand.createCq(0, 0, 16, buf.bus(), 1, true)), "CQ 0");
        assertStatus(INVALID_QUEUE_IDENTIFIER, d.admin(NvmeCommand.createCq(0, 1, 16, buf.bus(), 1, true)),
                "CQ 1 exists");
        assertStatus(INVALID_QUEUE_IDENTIFIER, d.admin(NvmeCommand.createCq(0, 5, 16, buf.bus(), 1, true)),
                "Number of Queues granted four pairs");
        assertStatus(INVALID_QUEUE_IDENTIFIER, d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 7, 0, 0)),
                "delete SQ 7, which does not exist");
        assertStatus(INVALID_QUEUE_IDENTIFIER, d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 0, 0, 0)),
                "delete the admin CQ");
    }

    @Test
    void invalidQueueSize() {
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 1, 0, 0)).ok());
        assertStatus(INVALID_QUEUE_SIZE, d.admin(NvmeCommand.createSq(0, 1, 1, buf.bus(), 1)), "one entry");
        assertStatus(INVALID_QUEUE_SIZE, d.admin(NvmeCommand.createSq(0, 1, 1025, buf.bus(), 1)), "over CAP.MQES");
        assertTrue(d.admin(NvmeCommand.createSq(0, 1, NvmeTestDriver.IO_ENTRIES, d.io.sq.dmaAddress(), 1)).ok());
        d.io.tail = 0;
        d.io.head = 0;
        d.io.phase = true;
        d.io.cq.cpu().fill((byte) 0);
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 1, 0, 0)).ok());
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 1, 0, 0)).ok());
        assertStatus(INVALID_QUEUE_SIZE, d.admin(NvmeCommand.createCq(0, 1, 1, buf.bus(), 1, true)), "a one-entry CQ");
        assertTrue(d.admin(NvmeCommand.createCq(0, 1, NvmeTestDriver.IO_ENTRIES, d.io.cq.dmaAddress(), 1, true)).ok());
        assertTrue(d.admin(NvmeCommand.createSq(0, 1, NvmeTestDriver.IO_ENTRIES, d.io.sq.dmaAddress(), 1)).ok());
    }

    @Test
    void completionQueueInvalid() {
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 1, 0, 0)).ok());
        assertStatus(COMPLETION_QUEUE_INVALID, d.admin(NvmeCommand.createSq(0, 1, 16, buf.bus(), 5)), "no CQ 5");
        assertStatus(COMPLETION_QUEUE_INVALID, d.admin(NvmeCommand.createSq(0, 1, 16, buf.bus(), 0)),
                "I/O SQs cannot complete into the admin CQ");
        assertTrue(d.admin(NvmeCommand.createSq(0, 1, NvmeTestDriver.IO_ENTRIES, d.io.sq.dmaAddress(), 1)).ok());
        d.io.tail = 0;
    }

    @Test
    void invalidInterruptVector() {
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_SQ, 0, 0, 0, 0, 1, 0, 0)).ok());
        assertTrue(d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 1, 0, 0)).ok());
        assertStatus(INVALID_INTERRUPT_VECTOR, d.admin(NvmeCommand.createCq(0, 1, 16, buf.bus(), 32, true)),
                "vector 32 of an MSI-X table of 32");
        assertTrue(d.admin(NvmeCommand.createCq(0, 1, NvmeTestDriver.IO_ENTRIES, d.io.cq.dmaAddress(), 1, true)).ok());
        assertTrue(d.admin(NvmeCommand.createSq(0, 1, NvmeTestDriver.IO_ENTRIES, d.io.sq.dmaAddress(), 1)).ok());
        d.io.tail = 0;
        d.io.head = 0;
        d.io.phase = true;
        d.io.cq.cpu().fill((byte) 0);
    }

    @Test
    void invalidQueueDeletionAsyncLimitLogPageAndSaveableFeature() {
        assertStatus(INVALID_QUEUE_DELETION, d.admin(NvmeCommand.of(ADMIN_DELETE_CQ, 0, 0, 0, 0, 1, 0, 0)),
                "CQ 1 still has SQ 1");
        assertStatus(INVALID_LOG_PAGE, d.admin(NvmeCommand.of(ADMIN_GET_LOG_PAGE, 0, 0, buf.bus(), 0, 127 << 16 | 0x70,
                0, 0)), "log page 0x70");
        assertStatus(FEATURE_NOT_SAVEABLE, d.admin(NvmeCommand.of(ADMIN_SET_FEATURES, 0, 0, 0, 0,
                FEAT_SAVE | FEAT_ARBITRATION, 0, 0)), "nothing is saveable");
        for (int i = 0; i <= 3; i++) {
            d.submit(d.admin, NvmeCommand.of(ADMIN_ASYNC_EVENT, 0x200 + i, 0, 0, 0, 0, 0, 0));
        }
        assertStatus(ASYNC_EVENT_LIMIT_EXCEEDED, d.admin(NvmeCommand.of(ADMIN_ASYNC_EVENT, 0x300, 0, 0, 0, 0, 0, 0)),
                "AERL 3: four outstanding at most");
    }
}
