package dev.dmaplane.rdma.verbs;

/** Path migration states ({@code enum ib_mig_state}). */
public enum MigState {
    MIGRATED(0), REARM(1), ARMED(2);

    private final int value;

    MigState(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }
}
