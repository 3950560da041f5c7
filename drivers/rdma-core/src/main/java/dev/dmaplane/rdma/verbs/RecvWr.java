package dev.dmaplane.rdma.verbs;

import java.util.List;

/** A receive work request ({@code struct ibv_recv_wr}): where an incoming send, or the immediate of a write, lands. */
public record RecvWr(long wrId, List<Sge> sgList) implements WorkRequest {
    public RecvWr {
        sgList = List.copyOf(sgList);
    }

    public static RecvWr of(long wrId, Sge... sges) {
        return new RecvWr(wrId, List.of(sges));
    }
}
