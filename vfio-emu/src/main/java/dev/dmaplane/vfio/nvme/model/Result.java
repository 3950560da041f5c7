package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeStatus;

/**
 * How a command ended: its status code and completion DW0, or deferred (an Asynchronous Event Request completes
 * when an event comes).
 */
record Result(int status, int dw0) {
    static final Result OK = new Result(NvmeStatus.SUCCESS, 0);
    static final Result DEFERRED = new Result(-1, 0);

    static Result ok(int dw0) {
        return new Result(NvmeStatus.SUCCESS, dw0);
    }

    static Result of(int status) {
        return status == NvmeStatus.SUCCESS ? OK : new Result(status, 0);
    }

    boolean deferred() {
        return status < 0;
    }
}
