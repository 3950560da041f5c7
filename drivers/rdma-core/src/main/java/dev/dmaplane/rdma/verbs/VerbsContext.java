package dev.dmaplane.rdma.verbs;

import dev.dmaplane.mm.AddressSpace;
import org.osgi.annotation.versioning.ProviderType;

import java.time.Duration;
import java.util.List;
import java.util.Optional;

/**
 * A device context ({@code struct ibv_context} from {@code ibv_open_device}): the handle table of one process on
 * one device, charged against the device's rdma cgroup limits, and its asynchronous event queue. Memory regions
 * pin and fault pages of the context's {@link #addressSpace()}. When the device goes away the context is
 * disassociated: a DEVICE_FATAL event is queued, outstanding work requests complete with
 * {@link WcStatus#WR_FLUSH_ERR} on their CQs (which can still be polled), every object is destroyed, and every
 * other call fails with {@code EIO}; the async event queue stays readable until {@link #close()}.
 */
@ProviderType
public interface VerbsContext extends AutoCloseable {
    /** The device's name ({@code ibv_get_device_name}). */
    String deviceName();

    /** The process memory the context registers. */
    AddressSpace addressSpace();

    /** {@code ibv_query_device}. */
    DeviceAttr queryDevice();

    /**
     * {@code ibv_query_port}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a port outside 1..phys_port_cnt
     */
    PortAttr queryPort(int port);

    /**
     * {@code ibv_query_gid}: the GID at {@code index} of the port's table ({@link Gid#ZERO} for an empty entry).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a bad port or index
     */
    Gid queryGid(int port, int index);

    /** {@code ibv_query_gid_table}: the valid entries of every port. */
    List<GidEntry> queryGidTable();

    /** {@code ibv_alloc_pd}. */
    ProtectionDomain allocPd();

    /** {@code ibv_create_comp_channel}. */
    CompletionChannel createCompChannel();

    /**
     * {@code ibv_create_cq}.
     *
     * @param cqe        minimum number of entries, 1..max_cqe
     * @param channel    where completion events go, or null
     * @param compVector completion vector, below num_comp_vectors
     */
    CompletionQueue createCq(int cqe, CompletionChannel channel, int compVector);

    /** {@code ibv_get_async_event} without blocking: the next event, if any. */
    Optional<AsyncEvent> pollAsyncEvent();

    /** {@code ibv_get_async_event}: waits up to {@code timeout} for the next event. */
    Optional<AsyncEvent> getAsyncEvent(Duration timeout);

    /** The objects of this context as {@code rdma resource show} lists them. */
    List<ResourceEntry> resources();

    /** Whether the device went away under this context. */
    boolean isDisassociated();

    /** {@code ibv_close_device}: destroys every object, newest first. Idempotent. */
    @Override
    void close();
}
