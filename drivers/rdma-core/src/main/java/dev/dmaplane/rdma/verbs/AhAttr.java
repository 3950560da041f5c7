package dev.dmaplane.rdma.verbs;

/**
 * An address vector ({@code struct ibv_ah_attr}): where packets go. On RoCE {@code grh} must be present
 * ({@code is_global}) and {@code dlid} is 0.
 */
public record AhAttr(GlobalRoute grh, int dlid, int sl, int srcPathBits, int staticRate, int portNum) {
    /** A RoCE address vector: GRH to {@code dgid} from the source GID at {@code sgidIndex}, on {@code port}. */
    public static AhAttr roce(Gid dgid, int sgidIndex, int port) {
        return new AhAttr(GlobalRoute.to(dgid, sgidIndex), 0, 0, 0, 0, port);
    }

    public boolean isGlobal() {
        return grh != null;
    }
}
