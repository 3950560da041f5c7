package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.dmaengine.DmaTransactionType;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.EnumSet;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * dmatest on one dmaengine channel ({@code drivers/dma/dmatest.c}: {@code dmatest_add_channel}, then one
 * {@code dmatest_func} run): probe checks the channel can copy and fill, takes the test buffers, runs the self test
 * through the channel with the buffers mapped for the channel's device, and publishes the result. {@link #remove()}
 * undoes it in reverse: result withdrawn, the channel terminated and synchronized ({@code dmaengine_terminate_sync},
 * so no callback of ours runs afterwards), buffers freed. The channel's device and its engine belong to the
 * channel's driver: dmatest never touches their registers, interrupts or bus mastering.
 */
final class DmaTestDevice implements BoundDevice {
    private static final Logger LOG = LoggerFactory.getLogger(DmaTestDevice.class);

    private final Device dmaDevice;
    private final HostMemory memory;
    private final AtomicBoolean removed = new AtomicBoolean();
    private ChannelClient client;
    private HostBuffer src;
    private HostBuffer dst;
    private AutoCloseable publication;
    private DmaTestResult result;

    private DmaTestDevice(Device dmaDevice, HostMemory memory) {
        this.dmaDevice = dmaDevice;
        this.memory = memory;
    }

    /**
     * Runs the self test on {@code channel}, whose transactions DMA as {@code dmaDevice}, and publishes the result.
     *
     * @throws ErrnoException {@code ENODEV} if the channel cannot both copy and fill; whatever the channel or the
     *                        DMA API refuses
     */
    static DmaTestDevice probe(Device dmaDevice, DmaChannel channel, HostMemory memory, Parameters params,
                               SelfTest.IommuWatch iommu, ResultPublisher publisher) {
        DmaTestDevice d = new DmaTestDevice(dmaDevice, memory);
        try {
            d.start(channel, params, iommu, publisher);
            return d;
        } catch (RuntimeException | Error e) {
            d.release();
            throw e;
        }
    }

    private void start(DmaChannel channel, Parameters params, SelfTest.IommuWatch iommu, ResultPublisher publisher) {
        EnumSet<DmaTransactionType> needed = EnumSet.of(DmaTransactionType.MEMCPY, DmaTransactionType.MEMSET);
        if (!channel.capabilities().containsAll(needed)) {
            throw new ErrnoException(Errno.ENODEV, "channel " + channel.name() + " offers " + channel.capabilities()
                    + ", dmatest needs " + needed);
        }
        client = new ChannelClient(channel, params.timeout());
        LOG.info("dmatest {}: channel {}, DMA as {}", dmaDevice.name(), channel.name(), dmaDevice.name());
        src = HostBuffer.allocate(memory, params.bufferOrder());
        dst = HostBuffer.allocate(memory, params.bufferOrder());
        result = new SelfTest(dmaDevice.name(), dmaDevice.dma(), client, src, dst, params, iommu).run();
        LOG.info("dmatest {}: {}", dmaDevice.name(), result.summary());
        publication = publisher.publish(result);
    }

    /** What the self test found. */
    DmaTestResult result() {
        return result;
    }

    @Override
    public void remove() {
        if (removed.compareAndSet(false, true)) {
            release();
            LOG.info("dmatest {}: remove: result withdrawn, channel synchronized, buffers freed", dmaDevice.name());
        }
    }

    /** Releases whatever was set up, newest first; each step runs even if an earlier one failed. */
    private void release() {
        step("withdraw the result", () -> {
            if (publication != null) {
                publication.close();
            }
        });
        step("terminate and synchronize the channel", () -> {
            if (client != null) {
                client.terminateSync();
            }
        });
        step("free the buffers", () -> {
            if (dst != null) {
                dst.close();
            }
            if (src != null) {
                src.close();
            }
        });
    }

    private interface Step {
        void run() throws Exception;
    }

    private void step(String what, Step s) {
        try {
            s.run();
        } catch (Exception e) {
            LOG.error("dmatest {}: {} failed", dmaDevice.name(), what, e);
        }
    }
}
