package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.ID_VALUE;
import static dev.dmaplane.hw.copyengine.CopyEngineRegs.IRQ_VECTOR;
import static dev.dmaplane.hw.copyengine.CopyEngineRegs.REG_ID;

/**
 * dmatest bound to one copy engine: what probe set up and what remove tears down, in the order of a PCI
 * dmaengine driver ({@code pci_enable_device_mem}, identify, {@code dma_set_mask_and_coherent},
 * {@code pci_set_master}, one MSI-X vector with a threaded completion handler, ring, enable; then the self test).
 * {@link #remove()} undoes it in reverse: result withdrawn, engine disabled before its ring is freed, the vector and
 * its handler thread freed ({@code pci_free_irq_vectors}, which devres would also do), buffers freed, bus mastering
 * and memory decoding off. A probe that fails part way releases what it took the same way. With {@code polled}
 * set, or on a function without MSI-X, no vector is taken and completion is polled.
 */
final class DmaTestDevice implements BoundDevice {
    private static final Logger LOG = LoggerFactory.getLogger(DmaTestDevice.class);
    /** The engine's descriptors carry 64-bit bus addresses: {@code DMA_BIT_MASK(64)}. */
    static final long DMA_MASK = -1L;

    private final PciFunction fn;
    private final HostMemory memory;
    private final AtomicBoolean removed = new AtomicBoolean();
    private IrqVectors irqs;
    private CopyEngineChannel channel;
    private HostBuffer src;
    private HostBuffer dst;
    private AutoCloseable publication;
    private DmaTestResult result;

    private DmaTestDevice(PciFunction fn, HostMemory memory) {
        this.fn = fn;
        this.memory = memory;
    }

    /**
     * Probes {@code fn}: identifies the engine, sets it up, runs the self test and publishes the result.
     *
     * @throws ErrnoException {@code ENODEV} if BAR0 is not a register block or {@code REG_ID} is not the copy
     *                        engine's; whatever setting up the engine or the DMA API refuses
     */
    static DmaTestDevice probe(PciFunction fn, HostMemory memory, Parameters params, SelfTest.IommuWatch iommu,
                               ResultPublisher publisher) {
        DmaTestDevice d = new DmaTestDevice(fn, memory);
        try {
            d.start(params, iommu, publisher);
            return d;
        } catch (RuntimeException | Error e) {
            d.release();
            throw e;
        }
    }

    private void start(Parameters params, SelfTest.IommuWatch iommu, ResultPublisher publisher) {
        Bar bar0 = fn.bar(0).orElseThrow(() -> new ErrnoException(Errno.ENODEV, fn.name() + ": no BAR0, so no copy engine"));
        if (!(bar0.backing() instanceof Bar.Mmio regs)) {
            throw new ErrnoException(Errno.ENODEV, fn.name() + ": BAR0 is device memory, not a register block");
        }
        fn.setMemorySpace(true);
        long id = regs.read(REG_ID, 8);
        if (id != ID_VALUE) {
            throw new ErrnoException(Errno.ENODEV, String.format("%s: REG_ID reads 0x%x, not a copy engine (0x%x)",
                    fn.name(), id, ID_VALUE));
        }
        DmaApi dma = fn.dma();
        dma.setDmaMask(DMA_MASK);
        fn.setMaster(true);
        IrqTrigger completion = params.polled() || fn.msix().isEmpty() ? null : requestCompletionIrq();
        channel = CopyEngineChannel.open(regs, dma, params.ringEntries(), params.timeout(), completion);
        LOG.info("dmatest {}: copy engine 0x{}, ring of {} descriptors at iova 0x{}, completion {}", fn.name(),
                Long.toHexString(id), params.ringEntries(), Long.toHexString(channel.ringIova()),
                channel.polled() ? "polled" : "by MSI-X vector " + IRQ_VECTOR);
        src = HostBuffer.allocate(memory, params.bufferOrder());
        dst = HostBuffer.allocate(memory, params.bufferOrder());
        result = new SelfTest(fn.name(), dma, channel, src, dst, params, iommu).run();
        LOG.info("dmatest {}: {}", fn.name(), result.summary());
        publication = publisher.publish(result);
    }

    /**
     * Allocates one MSI-X vector and requests the engine's completion vector with a threaded handler that signals
     * the returned trigger ({@code pci_alloc_irq_vectors}, {@code request_threaded_irq}).
     */
    private IrqTrigger requestCompletionIrq() {
        irqs = IrqVectors.alloc(fn, 1, 1, IrqVectors.PCI_IRQ_MSIX);
        IrqTrigger completion = new IrqTrigger();
        irqs.request(IRQ_VECTOR, null, vector -> {
            completion.signal();
            return IrqReturn.HANDLED;
        }, DmaTestDriver.NAME);
        return completion;
    }

    /** The MSI-X vectors probe allocated; empty when completion is polled. */
    Optional<IrqVectors> irqVectors() {
        return Optional.ofNullable(irqs);
    }

    /** What the self test found. */
    DmaTestResult result() {
        return result;
    }

    @Override
    public void remove() {
        if (removed.compareAndSet(false, true)) {
            release();
            LOG.info("dmatest {}: remove: engine disabled, ring, vectors and buffers freed, bus mastering off",
                    fn.name());
        }
    }

    /** Releases whatever was set up, newest first; each step runs even if an earlier one failed. */
    private void release() {
        step("withdraw the result", () -> {
            if (publication != null) {
                publication.close();
            }
        });
        step("disable the engine and free its ring", () -> {
            if (channel != null) {
                channel.close();
            }
        });
        step("free the interrupt vectors", () -> {
            if (irqs != null) {
                irqs.close();
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
        step("clear bus mastering and memory decoding", () -> {
            fn.setMaster(false);
            fn.setMemorySpace(false);
        });
    }

    private interface Step {
        void run() throws Exception;
    }

    private void step(String what, Step s) {
        try {
            s.run();
        } catch (Exception e) {
            LOG.error("dmatest {}: {} failed", fn.name(), what, e);
        }
    }
}
