package dev.dmaplane.rdma;

import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.resource.ResourceLimits;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.SequencedMap;

/** An RDMA device as applications see it ({@code struct ibv_device} from {@code ibv_get_device_list}). */
@ProviderType
public interface RdmaDevice {
    /** {@code ibv_get_device_name}, e.g. {@code rxe0}. */
    String name();

    /**
     * The device's index ({@code ib_device->index}, the ifindex of {@code rdma dev}): given at registration from a
     * cyclic counter as {@code assign_name} does, so a device keeps its number when others leave and a new device
     * does not take the number of one that just left.
     */
    int index();

    /** The driver behind it. */
    String driverName();

    /** {@code ibv_get_device_guid}. */
    long nodeGuid();

    /**
     * {@code ibv_device.node_type} and, through it, {@code transport_type}: CA (InfiniBand, RoCE) or RNIC (iWARP).
     */
    NodeType nodeType();

    /** The device attributes ({@code ibv_query_device} without a context). */
    DeviceAttr attr();

    /** Ports, numbered from 1 ({@code phys_port_cnt}). */
    default int portCount() {
        return attr().physPortCnt();
    }

    /**
     * The port's attributes as sysfs shows them ({@code /sys/class/infiniband/DEV/ports/N/}), without a context.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a bad port, {@code ENODEV} once unregistered
     */
    PortAttr portAttr(int port);

    /**
     * The port's hardware counters ({@code /sys/class/infiniband/DEV/ports/N/hw_counters}, {@code rdma statistic}),
     * a snapshot in the driver's order.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a bad port, {@code ENODEV} once unregistered
     */
    SequencedMap<String, Long> hwCounters(int port);

    /** The valid GID table entries of every port ({@code ports/N/gids}, {@code gid_attrs}). */
    List<GidEntry> gidTable();

    /** Whether the device is still registered. */
    boolean isRegistered();

    /**
     * {@code ibv_open_device} for the process whose memory is {@code mm}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} after the device went away, {@code EAGAIN} over the
     *                                           cgroup's hca_handle limit
     */
    VerbsContext open(AddressSpace mm);

    /**
     * {@code ib_register_mad_agent}: an agent on {@code port}'s GSI (QP1) for the requests of management class
     * {@code mgmtClass}, version {@code classVersion}, and the responses to its own sends, delivered to
     * {@code handler} on the device's MAD thread.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a bad port, class or version, or a class and
     *                                           version another agent of the port holds ({@code mad.c}'s
     *                                           method table); {@code EOPNOTSUPP} when the device has no GSI;
     *                                           {@code ENODEV} once unregistered
     */
    MadAgent registerMadAgent(int port, int mgmtClass, int classVersion, MadHandler handler);

    /** The rdma cgroup limits of this device ({@code rdma.max}). */
    ResourceLimits limits();

    /** Sets the rdma cgroup limits; charges above them stay until released. */
    void setLimits(ResourceLimits limits);

    /** Contexts open ({@code rdma.current hca_handle}). */
    int contextCount();

    /** Objects held by all contexts ({@code rdma.current hca_object}). */
    int objectCount();

    /** Every object of every context, as {@code rdma resource show dev NAME} lists them. */
    List<ResourceEntry> resources();
}
