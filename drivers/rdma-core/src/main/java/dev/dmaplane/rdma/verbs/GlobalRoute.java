package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.ErrnoException;

/**
 * The global routing header of an address vector ({@code struct ibv_global_route}); mandatory on RoCE, where the
 * destination GID is the remote IP address.
 */
public record GlobalRoute(Gid dgid, int flowLabel, int sgidIndex, int hopLimit, int trafficClass) {
    public GlobalRoute {
        ErrnoException.requireNonNull(dgid, "global route dgid");
    }

    public static GlobalRoute to(Gid dgid, int sgidIndex) {
        return new GlobalRoute(dgid, 0, sgidIndex, 64, 0);
    }
}
