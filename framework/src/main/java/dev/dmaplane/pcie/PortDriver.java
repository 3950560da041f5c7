package dev.dmaplane.pcie;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.pci.Bdf;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciPortType;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Optional;
import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * The PCI Express port driver ({@code drivers/pci/pcie/portdrv.c}, {@code pcieport}): it binds every port (a
 * bridge of class 0x0604) and starts the port services that apply; here the AER service
 * ({@code drivers/pci/pcie/aer.c}) of a root port with Advanced Error Reporting, which other ports do without. For
 * it, probe takes the port's one MSI vector, enables error reporting in Device Control of the port and of every
 * function below it and sets Root Error Command's enables ({@code aer_enable_rootport}). Its threaded
 * handler ({@code aer_isr}) reads and clears Root Error Status, finds each source by Error Source Identification,
 * reads its AER status, severity and header log, logs them as {@code aer_print_error} does (SLF4J and a
 * {@link TraceKind#PCIE_ERROR} trace event), clears the source's status (RW1C) and, for an uncorrectable non-fatal
 * error, runs the bound driver's {@code error_detected} and {@code resume} ({@code pcie_do_recovery}).
 */
public final class PortDriver implements Driver {
    private static final Logger LOG = LoggerFactory.getLogger(PortDriver.class);
    /** Device Control's four reporting enables ({@code PCI_EXP_AER_FLAGS}). */
    private static final int REPORTING = EXP_DEVCTL_CERE | EXP_DEVCTL_NFERE | EXP_DEVCTL_FERE | EXP_DEVCTL_URRE;
    /** Names of the uncorrectable status bits {@code aer_uncorrectable_error_string} gives, by bit. */
    private static final String[] UNCORRECTABLE = {"Undefined", null, null, null, "DLP", "SDES", null, null, null, null,
            null, null, "TLP", "FCP", "CmpltTO", "CmpltAbrt", "UnxCmplt", "RxOF", "MalfTLP", "ECRC", "UnsupReq", "ACSViol"};
    /** Names of the correctable status bits ({@code aer_correctable_error_string}). */
    private static final String[] CORRECTABLE = {"RxErr", null, null, null, null, null, "BadTLP", "BadDLLP", "Rollover",
            null, null, null, "Timeout", "NonFatalErr", "CorrIntErr", "HeaderOF"};

    private final PciTopology topology;
    private final Tracer tracer;

    public PortDriver(PciTopology topology, Tracer tracer) {
        this.topology = ErrnoException.requireNonNull(topology, "topology");
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
    }

    @Override
    public String name() {
        return "pcieport";
    }

    @Override
    public MatchTable matchTable() {
        return MatchTable.of(MatchEntry.Pci.ofClass(0x060400, 0xFFFFFF));
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        if (!(device instanceof PciFunction port) || port.portType().isEmpty()) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not a PCI Express port");
        }
        ConfigSpace cs = port.configSpace();
        OptionalInt aerCap = cs.findExtCapability(EXT_CAP_ID_ERR);
        if (port.portType().get() != PciPortType.ROOT_PORT || aerCap.isEmpty()) {
            return () -> {
            };
        }
        int aer = aerCap.getAsInt();
        IrqVectors irq = IrqVectors.alloc(port, 1, 1, IrqVectors.PCI_IRQ_MSI);
        try {
            irq.request(0, null, v -> handle(port, aer), "aerdrv");
            enableReporting(port);
            cs.write(aer + ERR_ROOT_COMMAND, 4, ERR_ROOT_CMD_ENABLES);
        } catch (RuntimeException e) {
            irq.close();
            throw e;
        }
        return () -> {
            cs.write(aer + ERR_ROOT_COMMAND, 4, 0);
            irq.close();
        };
    }

    /** Device Control's reporting enables on {@code port} and every function below it. */
    private static void enableReporting(PciFunction port) {
        Deque<PciFunction> todo = new ArrayDeque<>();
        todo.add(port);
        while (!todo.isEmpty()) {
            PciFunction fn = todo.poll();
            ConfigSpace cs = fn.configSpace();
            OptionalInt exp = cs.findCapability(CAP_ID_EXP);
            if (exp.isPresent() && cs.present()) {
                cs.write(exp.getAsInt() + EXP_DEVCTL, 2, cs.read(exp.getAsInt() + EXP_DEVCTL, 2) | REPORTING);
            }
            fn.subordinate().ifPresent(b -> todo.addAll(b.devices()));
        }
    }

    /** {@code aer_isr}: one interrupt, every error Root Error Status records. */
    private IrqReturn handle(PciFunction port, int aer) {
        ConfigSpace cs = port.configSpace();
        int status = cs.read(aer + ERR_ROOT_STATUS, 4);
        if ((status & (ERR_ROOT_COR_RCV | ERR_ROOT_UNCOR_RCV)) == 0) {
            return IrqReturn.NONE;
        }
        int source = cs.read(aer + ERR_ROOT_ERR_SRC, 4);
        cs.write(aer + ERR_ROOT_STATUS, 4, status);
        try {
            if ((status & ERR_ROOT_COR_RCV) != 0) {
                source(port, source & 0xFFFF).ifPresent(fn -> correctable(port, fn));
            }
            if ((status & ERR_ROOT_UNCOR_RCV) != 0) {
                boolean fatal = (status & ERR_ROOT_FATAL_RCV) != 0 && (status & ERR_ROOT_NONFATAL_RCV) == 0;
                source(port, source >>> 16).ifPresent(fn -> uncorrectable(port, fn, fatal));
            }
        } catch (RuntimeException e) {
            LOG.error("aer: {}: handling Root Error Status {} failed", port.bdf(), String.format("%#x", status), e);
            throw new ErrnoException(Errno.EIO, "aer: " + port.bdf() + ": handling the error failed: " + e.getMessage(), e);
        }
        return IrqReturn.HANDLED;
    }

    private Optional<PciFunction> source(PciFunction port, int requesterId) {
        Bdf bdf = Bdf.of(port.bdf().domain(), requesterId >>> 8, requesterId & 0xFF);
        Optional<PciFunction> fn = topology.functions().stream().filter(f -> f.bdf().equals(bdf)).findFirst();
        if (fn.isEmpty()) {
            LOG.warn("aer: {}: error source {} is no function of this machine", port.bdf(), bdf);
        }
        return fn;
    }

    private void correctable(PciFunction port, PciFunction fn) {
        ConfigSpace cs = fn.configSpace();
        int aer = cs.findExtCapability(EXT_CAP_ID_ERR).orElse(-1);
        int status = aer < 0 ? 0 : cs.read(aer + ERR_COR_STATUS, 4);
        int mask = aer < 0 ? 0 : cs.read(aer + ERR_COR_MASK, 4);
        print(port, fn, "Corrected", status, mask, CORRECTABLE, null);
        if (aer >= 0) {
            cs.write(aer + ERR_COR_STATUS, 4, status);
        }
        clearDeviceStatus(fn);
    }

    private void uncorrectable(PciFunction port, PciFunction fn, boolean fatal) {
        ConfigSpace cs = fn.configSpace();
        int aer = cs.findExtCapability(EXT_CAP_ID_ERR).orElse(-1);
        int status = aer < 0 ? 0 : cs.read(aer + ERR_UNCOR_STATUS, 4);
        int mask = aer < 0 ? 0 : cs.read(aer + ERR_UNCOR_MASK, 4);
        int[] header = null;
        if (aer >= 0 && (status & ~mask & (1 << (cs.read(aer + ERR_CAP, 4) & ERR_CAP_FEP))) != 0) {
            header = new int[4];
            for (int i = 0; i < 4; i++) {
                header[i] = cs.read(aer + ERR_HEADER_LOG + 4 * i, 4);
            }
        }
        print(port, fn, fatal ? "Uncorrectable (Fatal)" : "Uncorrectable (Non-Fatal)", status, mask, UNCORRECTABLE, header);
        if (aer >= 0) {
            cs.write(aer + ERR_UNCOR_STATUS, 4, status);
        }
        clearDeviceStatus(fn);
        if (!fatal) {
            BoundDevice.ErsResult result = fn.errorDetected(BoundDevice.ChannelState.NORMAL);
            if (result == BoundDevice.ErsResult.CAN_RECOVER || result == BoundDevice.ErsResult.RECOVERED) {
                fn.resume();
            }
            LOG.info("aer: {}: device recovery {}", fn.bdf(), result == BoundDevice.ErsResult.DISCONNECT ? "failed" : "successful");
        }
    }

    private static void clearDeviceStatus(PciFunction fn) {
        ConfigSpace cs = fn.configSpace();
        OptionalInt exp = cs.findCapability(CAP_ID_EXP);
        if (exp.isPresent()) {
            cs.write(exp.getAsInt() + EXP_DEVSTA, 2, cs.read(exp.getAsInt() + EXP_DEVSTA, 2));
        }
    }

    /** {@code aer_print_error}: the source, severity, status/mask, each bit by name and the TLP header with its requester. */
    private void print(PciFunction port, PciFunction fn, String severity, int status, int mask, String[] names, int[] header) {
        StringBuilder sb = new StringBuilder(String.format("PCIe Bus Error: severity=%s, source %s; error status/mask=%08x/%08x",
                severity, fn.bdf(), status, mask));
        for (int bit = 0; bit < 32; bit++) {
            if ((status & 1 << bit) != 0) {
                String name = bit < names.length && names[bit] != null ? names[bit] : "Unknown Error Bit " + bit;
                sb.append(String.format(" [%2d] %s%s", bit, name, (mask & 1 << bit) != 0 ? " (masked)" : ""));
            }
        }
        if (header != null) {
            int requester = header[1] >>> 16;
            Bdf req = Bdf.of(port.bdf().domain(), requester >>> 8, requester & 0xFF);
            sb.append(String.format("; TLP Header: %08x %08x %08x %08x; requester %s", header[0], header[1], header[2],
                    header[3], req));
        }
        String text = sb.toString();
        LOG.error("aer: {}: {}", port.bdf(), text);
        tracer.emit(TraceKind.PCIE_ERROR, fn.name(), 0, 0, text);
    }
}
