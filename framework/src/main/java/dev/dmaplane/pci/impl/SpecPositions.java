package dev.dmaplane.pci.impl;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import dev.dmaplane.errno.ErrnoException;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.Map;

/**
 * Where each entry of a machine file starts, its key and its value, by the entry's path in {@link SpecParser}'s
 * notation ({@code pci.hostBridges[0].children[1].bdf}): what a YAML node's start mark gives, read from the parser's
 * token locations so that YAML and JSON are treated alike. Turns a {@link SpecException} into a diagnostic
 * {@code FILE:LINE:COLUMN: message}.
 */
public final class SpecPositions {
    private final Map<String, Position> keys = new HashMap<>();
    private final Map<String, Position> values = new HashMap<>();

    /** A 1-based line and column. */
    public record Position(int line, int column) {
        static Position of(JsonLocation l) {
            return new Position(Math.max(1, l.getLineNr()), Math.max(1, l.getColumnNr()));
        }

        @Override
        public String toString() {
            return line + ":" + column;
        }
    }

    /** A mapping or list being read: its path, and the key or index of the entry being read in it. */
    private static final class Container {
        final String path;
        final boolean list;
        String entry;
        int next;

        Container(String path, boolean list) {
            this.path = path;
            this.list = list;
        }
    }

    private SpecPositions() {
    }

    /**
     * Reads the positions of every entry from {@code parser}, which must be at the start of a document the tree
     * reader has already accepted.
     */
    public static SpecPositions read(JsonParser parser) throws IOException {
        SpecPositions s = new SpecPositions();
        Deque<Container> open = new ArrayDeque<>();
        for (JsonToken t = parser.nextToken(); t != null; t = parser.nextToken()) {
            Position at = Position.of(parser.currentTokenLocation());
            Container c = open.peek();
            switch (t) {
                case FIELD_NAME -> {
                    c.entry = c.path.isEmpty() ? parser.currentName() : c.path + "." + parser.currentName();
                    s.keys.putIfAbsent(c.entry, at);
                }
                case END_OBJECT, END_ARRAY -> open.pop();
                default -> {
                    String path = c == null ? "" : c.list ? c.path + "[" + c.next++ + "]" : c.entry;
                    s.values.putIfAbsent(path, at);
                    if (t == JsonToken.START_OBJECT || t == JsonToken.START_ARRAY) {
                        open.push(new Container(path, t == JsonToken.START_ARRAY));
                    }
                }
            }
        }
        return s;
    }

    /**
     * Where the entry at {@code path} is: its key if {@code atKey} and it has one, else its value; for an entry
     * the file lacks (a missing key), the closest enclosing entry it has.
     */
    public Position of(String path, boolean atKey) {
        if (atKey && keys.containsKey(path)) {
            return keys.get(path);
        }
        for (String p = path; ; p = parent(p)) {
            Position v = values.get(p);
            if (v != null) {
                return v;
            }
            if (p.isEmpty()) {
                return new Position(1, 1);
            }
        }
    }

    /** {@code e} as {@code EINVAL: FILE:LINE:COLUMN: message}, with the errno and the cause of {@code e}. */
    public ErrnoException locate(String file, SpecException e) {
        return new ErrnoException(e.errno(), file + ":" + of(e.path(), e.atKey()) + ": " + e.text(), e);
    }

    private static String parent(String path) {
        int cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
        return cut < 0 ? "" : path.substring(0, cut);
    }
}
