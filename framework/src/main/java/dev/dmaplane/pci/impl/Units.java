package dev.dmaplane.pci.impl;

import com.fasterxml.jackson.databind.JsonNode;
import dev.dmaplane.errno.Errno;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Scalar values of a machine file: sizes with binary units, hex IDs, booleans, text. Errors name the path. */
public final class Units {
    private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)?");
    private static final Pattern HEX = Pattern.compile("0[xX]([0-9a-fA-F]+)");

    private Units() {
    }

    /**
     * A byte count: an integer, {@code 0x} hex, or a decimal with a binary unit ({@code K}/{@code KiB},
     * {@code M}/{@code MiB}, {@code G}/{@code GiB}, {@code T}/{@code TiB}).
     */
    public static long size(JsonNode n, String path) {
        if (n.isIntegralNumber()) {
            if (!n.canConvertToLong() || n.longValue() < 0) {
                throw bad(path, n.asText(), "is not a byte count from 0 to 2^63-1");
            }
            return n.longValue();
        }
        if (!n.isTextual()) {
            throw bad(path, n.toString(), "is not a size such as 16MiB");
        }
        String t = n.textValue().strip();
        Matcher hex = HEX.matcher(t);
        if (hex.matches()) {
            return parseHex(hex.group(1), path, t, Long.MAX_VALUE);
        }
        Matcher m = SIZE.matcher(t);
        if (!m.matches()) {
            throw bad(path, t, "is not a size (use bytes or a binary unit: K/KiB, M/MiB, G/GiB, T/TiB)");
        }
        int shift = switch (m.group(2) == null ? "B" : m.group(2)) {
            case "K", "KiB" -> 10;
            case "M", "MiB" -> 20;
            case "G", "GiB" -> 30;
            case "T", "TiB" -> 40;
            default -> 0;
        };
        try {
            long v = Long.parseLong(m.group(1));
            if (v > (Long.MAX_VALUE >> shift)) {
                throw bad(path, t, "is too large");
            }
            return v << shift;
        } catch (NumberFormatException e) {
            throw bad(path, t, "is too large");
        }
    }

    /** An unsigned number up to {@code max}: an integer or a {@code 0x} hex string (IDs, class codes). */
    public static long number(JsonNode n, String path, long max) {
        long v;
        if (n.isIntegralNumber()) {
            if (!n.canConvertToLong()) {
                throw bad(path, n.asText(), "is out of range 0.." + hex(max));
            }
            v = n.longValue();
        } else if (n.isTextual()) {
            String t = n.textValue().strip();
            Matcher hex = HEX.matcher(t);
            if (!hex.matches()) {
                throw bad(path, t, "is not a hex number such as 0x1da0");
            }
            v = parseHex(hex.group(1), path, t, max);
        } else {
            throw bad(path, n.toString(), "is not a number or a hex string such as \"0x1da0\"");
        }
        if (v < 0 || v > max) {
            throw bad(path, n.asText(), "is out of range 0.." + hex(max));
        }
        return v;
    }

    public static boolean bool(JsonNode n, String path) {
        if (!n.isBoolean()) {
            throw bad(path, n.toString(), "is not true or false");
        }
        return n.booleanValue();
    }

    /** A non-blank string. */
    public static String text(JsonNode n, String path) {
        if (!n.isTextual() || n.textValue().isBlank()) {
            throw bad(path, n.toString(), "is not a non-empty string");
        }
        return n.textValue().strip();
    }

    private static long parseHex(String digits, String path, String text, long max) {
        try {
            long v = Long.parseUnsignedLong(digits, 16);
            if (v < 0 || v > max) {
                throw bad(path, text, "is out of range 0.." + hex(max));
            }
            return v;
        } catch (NumberFormatException e) {
            throw bad(path, text, "is too large");
        }
    }

    private static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }

    /** {@code EINVAL} at {@code path} with a message "{@code path: 'value' reason}". */
    public static SpecException bad(String path, String value, String reason) {
        return SpecException.at(Errno.EINVAL, path, path + ": '" + value + "' " + reason);
    }
}
