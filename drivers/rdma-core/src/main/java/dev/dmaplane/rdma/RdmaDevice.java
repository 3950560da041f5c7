package dev.dmaplane.rdma;

import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.resource.ResourceLimits;

import java.util.List;

/** An RDMA device as applications see it ({@code struct ibv_device} from {@code ibv_get_device_list}). */
public interface RdmaDevice {
    /** {@code ibv_get_device_name}, e.g. {@code rxe0}. */
    String name();

    /** The driver behind it. */
    String driverName();

    /** {@code ibv_get_device_guid}. */
    long nodeGuid();

    /** The device attributes ({@code ibv_query_device} without a context). */
    DeviceAttr attr();

    /** Whether the device is still registered. */
    boolean isRegistered();

    /**
     * {@code ibv_open_device} for the process whose memory is {@code mm}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} after the device went away, {@code EAGAIN} over the
     *                                           cgroup's hca_handle limit
     */
    VerbsContext open(AddressSpace mm);

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
