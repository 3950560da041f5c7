package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.GidEntry;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Optional;

/**
 * A device registered with the core ({@code ib_register_device}), as its driver holds it: the way to report port
 * changes, to find QPs by number (incoming packets), to check and translate memory, and to leave.
 */
@ProviderType
public interface RdmaDeviceHandle {
    /** The name the core gave the device, e.g. {@code rxe0}. */
    String name();

    boolean isRegistered();

    /** The QP with this number, if it exists. */
    Optional<HwQp> qp(int qpn);

    /** Key lookup, access checks and translation for the data path. */
    MemoryAccess memory();

    /**
     * {@code ib_dispatch_event} of a port event (PORT_ACTIVE, PORT_ERR, LID_CHANGE, PKEY_CHANGE, ...) to every
     * context open on the device.
     */
    void portEvent(int port, EventType type);

    /**
     * The port's netdev changed (addresses added or removed, MAC, MTU): the core rebuilds the GID table as
     * {@code roce_gid_mgmt} does and raises GID_CHANGE when it changed.
     */
    void netdevChanged(int port);

    /** The port's GID table, valid entries only. */
    List<GidEntry> gidTable(int port);

    /**
     * A UD datagram for QP1, the GSI, arrived at a port: the provider checked its ICRC, P_Key and Q_Key
     * ({@code rxe_recv.c}'s {@code check_keys} with {@code GSI_QKEY}); the core's MAD layer hands it to the agent of its
     * class on a thread of its own ({@code ib_mad_recv_done}), so the call returns at once and never calls back into
     * the provider. A datagram that is not a MAD is dropped.
     */
    void madReceived(MadDatagram d);

    /**
     * The provider found a fatal error in its device (a firmware crash: what mlx5's health poller reports as
     * {@code IB_EVENT_DEVICE_FATAL}): traced as {@link dev.dmaplane.trace.TraceKind#DEVICE_FATAL} with
     * {@code reason}, then the device leaves as on hot unplug ({@link #unregister()}). Disassociation waits for the
     * verbs in flight on the device's contexts: call it from a thread of the provider's own that is in none of
     * them and holds nothing its hooks take. Idempotent.
     */
    void fatal(String reason);

    /**
     * {@code ib_unregister_device}: every context is disassociated (DEVICE_FATAL queued, outstanding work flushed
     * with WR_FLUSH_ERR, every object destroyed: nothing stays pinned or mapped) and the device disappears from
     * the core. Idempotent; call it from the driver's remove.
     */
    void unregister();
}
