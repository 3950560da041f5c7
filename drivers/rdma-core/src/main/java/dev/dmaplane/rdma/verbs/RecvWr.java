package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/** A receive work request ({@code struct ibv_recv_wr}): where an incoming send, or the immediate of a write, lands. */
public record RecvWr(long wrId, List<Sge> sgList) implements WorkRequest {
    public RecvWr {
        sgList = List.copyOf(ErrnoException.requireNonNull(sgList, "sg_list"));
    }

    public static RecvWr of(long wrId, Sge... sges) {
        return new RecvWr(wrId, List.of(sges));
    }
}
