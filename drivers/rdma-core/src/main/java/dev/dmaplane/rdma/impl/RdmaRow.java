package dev.dmaplane.rdma.impl;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * One line of iproute2's {@code rdma} output, built as its {@code print_*} calls build it ({@code rdma/utils.c},
 * {@code lib/json_print.c}): each call prints a text part ({@code PRINT_FP}), a JSON field ({@code PRINT_JSON}), or
 * both ({@code PRINT_ANY}).
 *
 * @param text the text parts in order, joined by one space
 * @param json the JSON fields in order
 */
record RdmaRow(List<String> text, Map<String, Object> json) {
    RdmaRow {
        text = List.copyOf(text);
        json = Collections.unmodifiableMap(new LinkedHashMap<>(json));
    }

    /** The line as text. */
    String line() {
        return String.join(" ", text);
    }

    /** Rows as text, one per line, or as iproute2's JSON array. */
    static String render(List<RdmaRow> rows, RdmaArgs args) {
        if (args.json()) {
            return RdmaJson.write(rows.stream().map(RdmaRow::json).toList(), args.pretty());
        }
        return rows.stream().map(RdmaRow::line).collect(Collectors.joining("\n"));
    }

    /** A row under construction. */
    static final class Builder {
        private final List<String> text = new ArrayList<>();
        private final Map<String, Object> json = new LinkedHashMap<>();

        /** {@code PRINT_ANY} with the format {@code "name %u "}. */
        Builder put(String name, long value) {
            text.add(name + " " + value);
            json.put(name, value);
            return this;
        }

        /** {@code PRINT_ANY} with the format {@code "name %s "}. */
        Builder put(String name, String value) {
            text.add(name + " " + value);
            json.put(name, value);
            return this;
        }

        /** {@code print_key}: {@code name 0x1a2b} as text, {@code "1a2b"} in JSON. */
        Builder key(String name, long value) {
            text.add(name + " 0x" + Long.toHexString(value));
            json.put(name, Long.toHexString(value));
            return this;
        }

        /** {@code PRINT_FP} only. */
        Builder text(String part) {
            text.add(part);
            return this;
        }

        /** {@code PRINT_JSON} only. */
        Builder json(String name, Object value) {
            json.put(name, value);
            return this;
        }

        RdmaRow build() {
            return new RdmaRow(text, json);
        }
    }
}
