package dev.dmaplane.driver.crc.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.driver.crc.CrcOffload;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.Hashtable;
import java.util.Map;
import java.util.function.Function;

/**
 * {@code crc32c}: the driver of the CRC32C offload engine (vendor 0x1da0, device 0x0c32), a PCI driver that
 * offers each engine it binds as a {@link CrcOffload} service with {@code crc.device} set to its BDF, as a crypto
 * driver registers its {@code crc32c} shash at probe and unregisters it at remove.
 */
@Component(service = Driver.class, immediate = true)
public final class CrcDriver implements Driver {
    private static final Logger LOG = LoggerFactory.getLogger(CrcDriver.class);
    /** The driver's name. */
    public static final String NAME = "crc32c";
    /** Completion must come within this. */
    static final Duration TIMEOUT = Duration.ofSeconds(5);
    static final MatchTable TABLE = MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0c32));

    /** Offers a bound engine to its users until the returned handle is closed. */
    private final Function<CrcOffload, AutoCloseable> publisher;

    @Activate
    public CrcDriver(BundleContext context) {
        this(engine -> {
            ServiceRegistration<CrcOffload> reg = context.registerService(CrcOffload.class, engine,
                    new Hashtable<>(Map.of("crc.device", engine.device())));
            return reg::unregister;
        });
    }

    CrcDriver(Function<CrcOffload, AutoCloseable> publisher) {
        this.publisher = publisher;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return TABLE;
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) throws Exception {
        if (!(device instanceof PciFunction fn)) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not a PCI function");
        }
        CrcDevice engine = CrcDevice.probe(fn, TIMEOUT);
        AutoCloseable publication;
        try {
            publication = publisher.apply(engine);
        } catch (RuntimeException e) {
            engine.remove();
            throw e;
        }
        return () -> {
            try {
                publication.close();
            } catch (IllegalStateException stopped) {
                LOG.debug("crc {}: the CrcOffload service went with the stopping bundle", fn.bdf());
            } catch (Exception e) {
                LOG.error("crc {}: withdrawing the CrcOffload service failed", fn.bdf(), e);
            }
            engine.remove();
        };
    }
}
