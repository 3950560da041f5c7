package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.spi.IwCm;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.WeakHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

/** The device registry behind {@link dev.dmaplane.rdma.RdmaCore}. */
public final class CoreImpl {
    /** {@code IB_DEVICE_NAME_MAX}. */
    static final int NAME_MAX = 64;

    private static final Logger LOG = LoggerFactory.getLogger(CoreImpl.class);

    final Tracer tracer;
    private final Map<String, DeviceImpl> devices = new LinkedHashMap<>();
    private final Map<AddressSpace, Integer> pids = new WeakHashMap<>();
    private int nextPid = 1;
    /** The last index given ({@code last_id} of {@code assign_name}'s {@code xa_alloc_cyclic}). */
    private int lastIndex = -1;

    public CoreImpl(Tracer tracer) {
        this.tracer = Objects.requireNonNull(tracer, "tracer");
    }

    /**
     * The number {@code rdma resource show} gives the process owning {@code mm} ({@code task_pid_vnr} of the
     * restrack entry's task): the model has no pids, so each address space that opened a device of this core is
     * numbered from 1 in the order it was first asked for.
     */
    synchronized int pid(AddressSpace mm) {
        return pids.computeIfAbsent(mm, m -> nextPid++);
    }

    public RdmaDeviceHandle register(String name, RdmaProvider provider) {
        if (provider == null) {
            throw new ErrnoException(Errno.EINVAL, "no provider");
        }
        checkName(name);
        DeviceImpl added;
        synchronized (this) {
            String n = name;
            if (name.contains("%d")) {
                for (int i = 0; ; i++) {
                    n = name.replace("%d", Integer.toString(i));
                    if (!devices.containsKey(n)) {
                        break;
                    }
                }
            } else if (devices.containsKey(name)) {
                throw new ErrnoException(Errno.EEXIST, "an RDMA device named " + name + " is registered");
            }
            DeviceImpl d = new DeviceImpl(this, n, nextIndex(), provider);
            devices.put(n, d);
            added = d;
        }
        for (Client c : clients) {
            c.add(added);
        }
        return added;
    }

    /** {@code xa_alloc_cyclic(&devices, &index, ..., xa_limit_31b, &last_id)}: the next free index after the last one. */
    private int nextIndex() {
        int i = lastIndex;
        do {
            i = i == Integer.MAX_VALUE ? 0 : i + 1;
        } while (indexInUse(i));
        lastIndex = i;
        return i;
    }

    private boolean indexInUse(int i) {
        return devices.values().stream().anyMatch(d -> d.index() == i);
    }

    private static void checkName(String name) {
        if (name == null || name.isBlank() || name.length() >= NAME_MAX || name.indexOf('/') >= 0
                || name.chars().anyMatch(Character::isWhitespace)) {
            throw new ErrnoException(Errno.EINVAL, "bad RDMA device name '" + name + "'");
        }
        int pct = name.indexOf('%');
        if (pct >= 0 && (!name.startsWith("%d", pct) || name.indexOf('%', pct + 1) >= 0)) {
            throw new ErrnoException(Errno.EINVAL, "an RDMA device name may hold one %d and no other %: '" + name + "'");
        }
    }

    /** A kernel-side user of every device ({@code struct ib_client}): told when one is added and when it leaves. */
    public interface Client {
        /** A device registered (or was registered when the client was added). */
        void add(RdmaDevice d);

        /** The device begins to unregister; its contexts are still there. */
        void remove(RdmaDevice d);
    }

    private final List<Client> clients = new CopyOnWriteArrayList<>();

    /** {@code ib_register_client}: {@code add} runs for the devices registered now and for every later one. */
    public void addClient(Client c) {
        clients.add(c);
        for (RdmaDevice d : devices()) {
            c.add(d);
        }
    }

    void removing(DeviceImpl d) {
        for (Client c : clients) {
            try {
                c.remove(d);
            } catch (RuntimeException e) {
                LOG.error("{}: a client's remove callback failed", d.name(), e);
            }
        }
    }

    synchronized void remove(DeviceImpl d) {
        devices.remove(d.name(), d);
    }

    public synchronized List<RdmaDevice> devices() {
        return List.copyOf(devices.values());
    }

    /** The connection manager of an iWARP device's provider ({@code device->ops.iw_*}), empty for IB and RoCE. */
    public Optional<IwCm> iwCm(RdmaDevice d) {
        return d instanceof DeviceImpl di ? di.provider.iwCm() : Optional.empty();
    }

    /**
     * The QP numbered {@code qpn} on iWARP device {@code d} as the iw_cm takes it for a connection
     * ({@code device->ops.iw_get_qp}), empty when there is none.
     */
    public Optional<QueuePair> iwQp(RdmaDevice d, int qpn) {
        return d instanceof DeviceImpl di ? Optional.ofNullable(di.queuePair(qpn)) : Optional.empty();
    }

    public synchronized Optional<RdmaDevice> device(String name) {
        return Optional.ofNullable(devices.get(name));
    }

    public void close() {
        List<DeviceImpl> all;
        synchronized (this) {
            all = new ArrayList<>(devices.values());
        }
        for (int i = all.size() - 1; i >= 0; i--) {
            all.get(i).unregister();
        }
    }
}
