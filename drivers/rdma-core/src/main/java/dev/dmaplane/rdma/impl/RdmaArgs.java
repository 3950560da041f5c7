package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;

/**
 * A command line of the {@code rdma:} commands: iproute2 {@code rdma}'s output options ({@code rdma/rdma.c}:
 * {@code -j}/{@code --json}, {@code -p}/{@code --pretty}, bundled as {@code -jp}) anywhere among the words, which
 * stay in order. {@code -p} alone means pretty JSON, as the Gogo commands have no text to make pretty.
 *
 * @param json   JSON output
 * @param pretty JSON indented
 * @param words  the command's words without the options
 */
record RdmaArgs(boolean json, boolean pretty, List<String> words) {
    RdmaArgs {
        words = List.copyOf(words);
    }

    /**
     * @throws ErrnoException {@code EINVAL} naming an option other than these, or a null word
     */
    static RdmaArgs parse(String command, String... argv) {
        boolean json = false;
        boolean pretty = false;
        List<String> words = new ArrayList<>();
        for (String a : argv == null ? new String[0] : argv) {
            if (a == null) {
                throw new ErrnoException(Errno.EINVAL, command + ": a null argument");
            }
            switch (a) {
                case "--json" -> json = true;
                case "--pretty" -> pretty = true;
                default -> {
                    if (a.length() > 1 && a.startsWith("-") && !a.startsWith("--")
                            && a.substring(1).chars().allMatch(c -> c == 'j' || c == 'p')) {
                        json |= a.indexOf('j') > 0;
                        pretty |= a.indexOf('p') > 0;
                    } else if (a.startsWith("-") && a.length() > 1) {
                        throw new ErrnoException(Errno.EINVAL, command + ": unknown option '" + a
                                + "' (-j JSON, -p pretty JSON)");
                    } else {
                        words.add(a);
                    }
                }
            }
        }
        return new RdmaArgs(json || pretty, pretty, words);
    }

    /** The word at {@code i}, or null past the end. */
    String word(int i) {
        return i < words.size() ? words.get(i) : null;
    }
}
