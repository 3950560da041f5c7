package dev.dmaplane.vfio.nvme;

/**
 * Status codes of a completion's status field (NVM Express Base Specification 2.0, 4.2.3; {@code NVME_SC_*}):
 * the Status Code Type in bits 10:8 and the Status Code in bits 7:0, as {@link NvmeCompletion#code()} returns them.
 */
public final class NvmeStatus {
    private NvmeStatus() {
    }

    /** SCT and SC: bits 10:0 of the status field. */
    public static final int CODE_MASK = 0x7ff;
    /** More information in the Error Information log page (bit 13). */
    public static final int MORE = 1 << 13;
    /** Do Not Retry (bit 14). */
    public static final int DNR = 1 << 14;

    /** Generic Command Status (SCT 0), Base 2.0 figure 100 and NVM Command Set 1.0 figure 82. */
    public static final int SUCCESS = 0x00;
    public static final int INVALID_OPCODE = 0x01;
    public static final int INVALID_FIELD = 0x02;
    public static final int COMMAND_ID_CONFLICT = 0x03;
    public static final int DATA_TRANSFER_ERROR = 0x04;
    public static final int INTERNAL_ERROR = 0x06;
    public static final int ABORTED_SQ_DELETION = 0x08;
    public static final int INVALID_NAMESPACE = 0x0b;
    public static final int INVALID_PRP_OFFSET = 0x13;
    public static final int LBA_OUT_OF_RANGE = 0x80;

    /** Command Specific Status (SCT 1), Base 2.0 figure 101. */
    public static final int COMPLETION_QUEUE_INVALID = 0x100;
    public static final int INVALID_QUEUE_IDENTIFIER = 0x101;
    public static final int INVALID_QUEUE_SIZE = 0x102;
    public static final int ASYNC_EVENT_LIMIT_EXCEEDED = 0x105;
    public static final int INVALID_INTERRUPT_VECTOR = 0x108;
    public static final int INVALID_LOG_PAGE = 0x109;
    public static final int INVALID_QUEUE_DELETION = 0x10c;
    public static final int FEATURE_NOT_SAVEABLE = 0x10d;

    /** The name of a status code, for logs and messages. */
    public static String name(int code) {
        return switch (code & CODE_MASK) {
            case SUCCESS -> "Successful Completion";
            case INVALID_OPCODE -> "Invalid Command Opcode";
            case INVALID_FIELD -> "Invalid Field in Command";
            case COMMAND_ID_CONFLICT -> "Command ID Conflict";
            case DATA_TRANSFER_ERROR -> "Data Transfer Error";
            case INTERNAL_ERROR -> "Internal Error";
            case ABORTED_SQ_DELETION -> "Command Aborted due to SQ Deletion";
            case INVALID_NAMESPACE -> "Invalid Namespace or Format";
            case INVALID_PRP_OFFSET -> "PRP Offset Invalid";
            case LBA_OUT_OF_RANGE -> "LBA Out of Range";
            case COMPLETION_QUEUE_INVALID -> "Completion Queue Invalid";
            case INVALID_QUEUE_IDENTIFIER -> "Invalid Queue Identifier";
            case INVALID_QUEUE_SIZE -> "Invalid Queue Size";
            case ASYNC_EVENT_LIMIT_EXCEEDED -> "Asynchronous Event Request Limit Exceeded";
            case INVALID_INTERRUPT_VECTOR -> "Invalid Interrupt Vector";
            case INVALID_LOG_PAGE -> "Invalid Log Page";
            case INVALID_QUEUE_DELETION -> "Invalid Queue Deletion";
            case FEATURE_NOT_SAVEABLE -> "Feature Identifier Not Saveable";
            default -> String.format("status %#x", code & CODE_MASK);
        };
    }
}
