package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.WcStatus;

/**
 * A started send work request and, once known, how it ended: siw completes SENDs and WRITEs when they are handed
 * to TCP and READs when their last response segment arrives, so the statuses come out of order and the QP hands
 * them to the core in queue order ({@code siw_sqe_complete}, {@code siw_check_tx_fence}).
 */
final class Pending {
    final SendWqe wqe;
    /** Null while the request is in progress. */
    WcStatus status;

    Pending(SendWqe wqe) {
        this.wqe = wqe;
    }
}
