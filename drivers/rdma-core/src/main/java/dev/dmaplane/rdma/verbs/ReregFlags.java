package dev.dmaplane.rdma.verbs;

/** What {@code ibv_rereg_mr} changes ({@code enum ibv_rereg_mr_flags}). */
public final class ReregFlags {
    public static final int CHANGE_TRANSLATION = 1;
    public static final int CHANGE_PD = 1 << 1;
    public static final int CHANGE_ACCESS = 1 << 2;
    public static final int ALL = CHANGE_TRANSLATION | CHANGE_PD | CHANGE_ACCESS;

    private ReregFlags() {
    }
}
