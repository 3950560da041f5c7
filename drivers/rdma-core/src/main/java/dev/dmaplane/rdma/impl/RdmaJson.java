package dev.dmaplane.rdma.impl;

import java.util.List;
import java.util.Map;

/**
 * iproute2's {@code lib/json_writer.c} as {@code rdma -j} and {@code rdma -j -p} print: an array of objects, on one
 * line, or pretty with four spaces per level, {@code ": "} after a name, {@code "[ {"}, {@code "},{"} and
 * {@code "} ]"} between the objects. Values are strings, integers or lists of strings.
 */
final class RdmaJson {
    private final StringBuilder out = new StringBuilder();
    private final boolean pretty;
    private int depth;
    private boolean comma;

    private RdmaJson(boolean pretty) {
        this.pretty = pretty;
    }

    /** The rows as a JSON array of objects, one field per name. */
    static String write(List<Map<String, Object>> rows, boolean pretty) {
        RdmaJson w = new RdmaJson(pretty);
        w.begin('[');
        if (pretty) {
            w.out.append(' ');
        }
        for (Map<String, Object> row : rows) {
            w.begin('{');
            row.forEach(w::field);
            w.end('}');
        }
        if (pretty && w.comma) {
            w.out.append(' ');
        }
        w.comma = false;
        w.end(']');
        return w.out.toString();
    }

    private void field(String name, Object value) {
        separator();
        eol();
        comma = false;
        string(name);
        out.append(pretty ? ": " : ":");
        switch (value) {
            case List<?> list -> {
                begin('[');
                if (pretty) {
                    out.append(' ');
                }
                for (Object o : list) {
                    separator();
                    string(o.toString());
                }
                if (pretty && comma) {
                    out.append(' ');
                }
                comma = false;
                end(']');
            }
            case Number n -> {
                separator();
                out.append(n);
            }
            default -> {
                separator();
                string(value.toString());
            }
        }
    }

    private void begin(char c) {
        separator();
        out.append(c);
        depth++;
        comma = false;
    }

    private void end(char c) {
        depth--;
        if (comma) {
            eol();
        }
        out.append(c);
        comma = true;
    }

    /** {@code jsonw_eor}: a comma before every value but the first of an object or array. */
    private void separator() {
        if (comma) {
            out.append(',');
        }
        comma = true;
    }

    private void eol() {
        if (pretty) {
            out.append('\n').append("    ".repeat(depth));
        }
    }

    /** {@code jsonw_puts}: RFC 8259 escapes, control characters as {@code \\u00XX}. */
    private void string(String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '\t' -> out.append("\\t");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\f' -> out.append("\\f");
                case '\b' -> out.append("\\b");
                case '\\' -> out.append("\\\\");
                case '"' -> out.append("\\\"");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }
}
