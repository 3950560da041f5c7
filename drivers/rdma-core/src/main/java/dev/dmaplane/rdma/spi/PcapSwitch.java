package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * The capture a software HCA driver's {@code pcap FILE|off} command turns on, replaces or closes, and hands to each
 * of the driver's devices: a capture turned on while a device registers reaches it either way, because handing the
 * capture to every device and adding a device ({@link #attach}) take the same lock.
 */
public final class PcapSwitch {
    private final String driver;
    private PcapFile capture;

    /** A switch, off, whose messages and files name {@code driver} ({@code rxe}, {@code siw}). */
    public PcapSwitch(String driver) {
        this.driver = ErrnoException.requireNonNull(driver, "driver");
    }

    /**
     * {@code pcap FILE|off}: opens {@code file} (or, for {@code off}, nothing), hands it (or null) to {@code devices},
     * then closes the capture before.
     *
     * @return what is captured, and where
     * @throws ErrnoException {@code EINVAL} for a missing or invalid file name, {@code EIO} when the file cannot be
     *                        written (the capture before stays on)
     */
    public synchronized String turn(String file, Consumer<PcapFile> devices) {
        if (file == null || file.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, driver + ": pcap needs a file name or 'off', not '" + file + "'");
        }
        ErrnoException.requireNonNull(devices, driver + ": pcap devices");
        PcapFile old = capture;
        PcapFile now = null;
        if (!file.equals("off")) {
            try {
                now = PcapFile.open(Path.of(file), driver);
            } catch (InvalidPathException e) {
                throw new ErrnoException(Errno.EINVAL, driver + ": pcap file '" + file + "': " + e.getMessage(), e);
            }
        }
        capture = now;
        devices.accept(now);
        if (old != null) {
            old.close();
        }
        return now == null ? "capture off" + (old == null ? "" : ", " + old.file() + " closed")
                : "capturing to " + now.file();
    }

    /** Runs {@code device} with the capture that is on (or null), under the lock {@link #turn} takes. */
    public synchronized void attach(Consumer<PcapFile> device) {
        ErrnoException.requireNonNull(device, driver + ": pcap device");
        device.accept(capture);
    }
}
