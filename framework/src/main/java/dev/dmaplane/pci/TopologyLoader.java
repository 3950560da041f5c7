package dev.dmaplane.pci;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import com.fasterxml.jackson.dataformat.yaml.snakeyaml.error.MarkedYAMLException;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.impl.SpecException;
import dev.dmaplane.pci.impl.SpecParser;
import dev.dmaplane.pci.impl.SpecPositions;

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
 * Every error is an {@link ErrnoException} whose message starts as a compiler's does, with the file, line and
 * column of the bad entry (its key for an unknown key, the enclosing mapping for a missing one, else its value),
 * then the path of the entry, e.g. {@code m.yaml:14:21: pci.hostBridges[0].children[1].bdf: ...}.
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
    /** The name errors give machine-file text that came from no file. */
    private static final String TEXT_SOURCE = "<text>";

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
     * @throws ErrnoException {@code ENOENT} naming the file if it is missing, {@code EIO} if unreadable,
     *                        {@code EINVAL} as {@code FILE:LINE:COLUMN: PATH: reason} for the first bad entry
     */
    public static MachineSpec parse(Path file) {
        return read(file).spec();
    }

    /**
     * Parses machine-file text; errors name the text {@code <text>}.
     *
     * @throws ErrnoException {@code EINVAL} as {@code <text>:LINE:COLUMN: PATH: reason} for a syntax error or the
     *                        first bad entry
     */
    public static MachineSpec parse(String text, Format format) {
        return parse(text, format, TEXT_SOURCE).spec();
    }

    /**
     * Parses and builds a machine file.
     *
     * @throws ErrnoException as {@link #parse(Path)}, and for an inconsistent hierarchy as {@link #build}, each with
     *                        the file, line and column of the entry in front
     */
    public static PciTopology load(Path file) {
        return read(file).build();
    }

    /** Parses and builds machine-file text; errors name the text {@code <text>}. */
    public static PciTopology load(String text, Format format) {
        return parse(text, format, TEXT_SOURCE).build();
    }

    /** A parsed machine file with where its entries are, so that errors of the build can name their place. */
    private record Parsed(MachineSpec spec, SpecPositions where, String source) {
        PciTopology build() {
            try {
                return TopologyLoader.build(spec);
            } catch (SpecException e) {
                throw where.locate(source, e);
            }
        }
    }

    private static Parsed read(Path file) {
        Format f = Format.of(file);
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new ErrnoException(Errno.ENOENT, "machine file " + file + " does not exist", e);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "cannot read machine file " + file + ": " + e.getMessage(), e);
        }
        return parse(text, f, file.toString());
    }

    private static Parsed parse(String text, Format format, String source) {
        if (text == null || text.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, source + ":1:1: machine file is empty");
        }
        ObjectMapper mapper = format == Format.JSON ? JSON : YAML;
        JsonNode root;
        SpecPositions where;
        try {
            root = mapper.readTree(text);
            try (JsonParser tokens = mapper.createParser(text)) {
                where = SpecPositions.read(tokens);
            }
        } catch (JsonProcessingException e) {
            JsonLocation l = e.getLocation();
            String at = l == null ? "" : ":" + l.getLineNr() + ":" + l.getColumnNr();
            // SnakeYAML's message spans lines, each part followed by a snippet of the file: its parts on one line
            String why = e instanceof MarkedYAMLException m
                    ? (m.getContext() == null ? "" : m.getContext() + ": ") + m.getProblem()
                    : e.getOriginalMessage();
            why = String.join(" ", why.lines().map(String::strip).toList()).strip();
            throw new ErrnoException(Errno.EINVAL, source + at + ": machine file is not valid " + format + ": " + why, e);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, source + ": cannot read the machine file: " + e.getMessage(), e);
        }
        try {
            return new Parsed(SpecParser.parse(root), where, source);
        } catch (SpecException e) {
            throw where.locate(source, e);
        }
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
        return parse(defaultMachineText(), Format.YAML, DEFAULT_MACHINE_RESOURCE).build();
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
