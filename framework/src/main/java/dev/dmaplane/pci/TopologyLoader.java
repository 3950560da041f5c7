package dev.dmaplane.pci;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.impl.SpecParser;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Reads a machine file (YAML or JSON) into a {@link MachineSpec} and builds the {@link PciTopology} it
 * describes, as firmware and the kernel's PCI enumeration together would: bus numbers assigned depth-first,
 * BARs placed in MMIO windows naturally aligned, bridge windows programmed to cover what lies below them.
 * Every error is an {@link ErrnoException} whose message starts with the path of the bad entry, e.g.
 * {@code pci.hostBridges[0].children[1].bdf}.
 */
public final class TopologyLoader {
    /** Start of the window 64-bit prefetchable BARs are placed in: 1 TiB, above any host memory. */
    public static final long MMIO64_BASE = HostMemory.MAX_SIZE;
    /** End (exclusive) of the 64-bit window. */
    public static final long MMIO64_LIMIT = 1L << 48;
    /** Start of the window below 4 GiB for 32-bit and non-prefetchable BARs (the x86 "PCI hole"). */
    public static final long MMIO32_BASE = 0xC000_0000L;
    /** End (exclusive) of the 32-bit window, where the I/O APIC range begins. */
    public static final long MMIO32_LIMIT = 0xFEC0_0000L;
    /** Class-path resource, relative to this package, holding the default machine. */
    public static final String DEFAULT_MACHINE_RESOURCE = "default-machine.yaml";

    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();
    private static final ObjectMapper YAML = YAMLMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

    private TopologyLoader() {
    }

    /** The syntax of a machine file. */
    public enum Format {
        YAML, JSON;

        /**
         * The format a file name's extension names ({@code .yaml}, {@code .yml}, {@code .json}).
         *
         * @throws ErrnoException {@code EINVAL} naming the file for any other extension
         */
        public static Format of(Path file) {
            String n = file.getFileName() == null ? "" : file.getFileName().toString().toLowerCase(Locale.ROOT);
            if (n.endsWith(".yaml") || n.endsWith(".yml")) {
                return YAML;
            }
            if (n.endsWith(".json")) {
                return JSON;
            }
            throw new ErrnoException(Errno.EINVAL, file + ": machine file must end in .yaml, .yml or .json");
        }
    }

    /**
     * Parses a machine file, its format taken from its extension.
     *
     * @throws ErrnoException {@code ENOENT} if the file is missing, {@code EIO} if unreadable, {@code EINVAL}
     *                        naming the path of the first bad entry
     */
    public static MachineSpec parse(Path file) {
        Format f = Format.of(file);
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new ErrnoException(Errno.ENOENT, "machine file " + file + " does not exist", e);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "cannot read machine file " + file + ": " + e.getMessage(), e);
        }
        return parse(text, f);
    }

    /**
     * Parses machine-file text.
     *
     * @throws ErrnoException {@code EINVAL} for a syntax error (with line and column) or naming the path of the
     *                        first bad entry
     */
    public static MachineSpec parse(String text, Format format) {
        if (text == null || text.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "machine file is empty");
        }
        JsonNode root;
        try {
            root = (format == Format.JSON ? JSON : YAML).readTree(text);
        } catch (JsonProcessingException e) {
            String where = e.getLocation() == null ? ""
                    : " at line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr();
            throw new ErrnoException(Errno.EINVAL, "machine file is not valid " + format + where + ": " + e.getOriginalMessage(), e);
        }
        return SpecParser.parse(root);
    }

    /** Parses and builds a machine file. */
    public static PciTopology load(Path file) {
        return build(parse(file));
    }

    /** Parses and builds machine-file text. */
    public static PciTopology load(String text, Format format) {
        return build(parse(text, format));
    }

    /**
     * Builds the topology a spec describes.
     *
     * @throws ErrnoException {@code EINVAL} naming the path and BDF of an inconsistent entry (a function off its
     *                        parent's bus, a bad ID or BAR), {@code EEXIST} for a BDF used twice, {@code ENOSPC}
     *                        if bus numbers or an MMIO window run out
     */
    public static PciTopology build(MachineSpec spec) {
        return TopologyBuilder.build(spec);
    }

    /** The embedded default machine: 64 GiB, IOMMU on, a GPU and an RDMA HCA under one switch, a second HCA, an NVMe. */
    public static PciTopology defaultMachine() {
        return load(defaultMachineText(), Format.YAML);
    }

    /** The text of the embedded default machine file, a starting point for writing one's own. */
    public static String defaultMachineText() {
        try (InputStream in = TopologyLoader.class.getResourceAsStream(DEFAULT_MACHINE_RESOURCE)) {
            if (in == null) {
                throw new ErrnoException(Errno.ENOENT, "resource " + DEFAULT_MACHINE_RESOURCE + " is missing from the bundle");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "cannot read " + DEFAULT_MACHINE_RESOURCE + ": " + e.getMessage(), e);
        }
    }
}
