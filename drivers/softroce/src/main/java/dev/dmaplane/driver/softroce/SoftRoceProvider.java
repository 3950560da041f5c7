package dev.dmaplane.driver.softroce;

import dev.dmaplane.device.Device;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MadDatagram;
import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;

import java.util.SequencedMap;
import java.util.function.Supplier;

/**
 * The {@code ib_device_ops} of one Soft-RoCE HCA: limits and port of an rxe device (active MTU from the netdev's,
 * 1500 → 1024), the netdev, and doorbells that hand QPs to the device's {@link Engine}.
 */
final class SoftRoceProvider implements RdmaProvider {
    private final Device device;
    private final DeviceAttr attr;
    private final NetdevInfo netdev;
    private volatile PortAttr port;
    final Engine engine;

    SoftRoceProvider(Device device, DeviceAttr attr, NetdevInfo netdev, Engine engine) {
        this.device = device;
        this.attr = attr;
        this.netdev = netdev;
        this.engine = engine;
        this.port = portAttr(PortState.ACTIVE);
    }

    private PortAttr portAttr(PortState state) {
        return PortAttr.roce(state, Mtu.MTU_4096, Mtu.fromNetdevMtu(netdev.mtu()), 16);
    }

    /**
     * The netdev's carrier came or went ({@code rxe_port_up} / {@code rxe_port_down}): the port's state, the
     * engine's link, the {@code link_downed} count and the port event to every context.
     */
    synchronized void carrier(boolean up) {
        PortState to = up ? PortState.ACTIVE : PortState.DOWN;
        if (port.state() == to) {
            return;
        }
        port = portAttr(to);
        engine.carrier(up);
        engine.handle.portEvent(1, up ? EventType.PORT_ACTIVE
                : EventType.PORT_ERR);
    }

    @Override
    public String driverName() {
        return "rdma_rxe";
    }

    @Override
    public Device dmaDevice() {
        return device;
    }

    @Override
    public DeviceAttr deviceAttr() {
        return attr;
    }

    @Override
    public PortAttr portAttr(int p) {
        return port;
    }

    @Override
    public NetdevInfo netdev(int p) {
        return netdev;
    }

    @Override
    public SequencedMap<String, Long> hwCounters(int p) {
        return engine.counters.values();
    }

    @Override
    public void createQp(HwQp qp) {
        engine.ctx(qp);
    }

    @Override
    public void modifyQp(HwQp qp, QpAttr attr, QpState from, QpState to) {
        engine.modify(qp, attr, from, to);
    }

    @Override
    public <T> T quiesce(HwQp qp, Supplier<T> change) {
        return engine.quiesce(change);
    }

    @Override
    public void destroyQp(HwQp qp) {
        engine.destroy(qp);
    }

    @Override
    public void sendMad(MadDatagram d) {
        engine.gsi.send(d);
    }

    @Override
    public void postSend(HwQp qp) {
        engine.doorbell(qp);
    }
}
