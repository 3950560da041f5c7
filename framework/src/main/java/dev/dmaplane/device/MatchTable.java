package dev.dmaplane.device;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;
import java.util.Optional;

/** A driver's ID table ({@code MODULE_DEVICE_TABLE}): rows tried in order, the first that matches wins. */
public record MatchTable(List<MatchEntry> entries) {
    public MatchTable {
        if (entries == null || entries.isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "a match table needs at least one entry");
        }
        entries = List.copyOf(entries);
    }

    public static MatchTable of(MatchEntry... entries) {
        return new MatchTable(List.of(entries));
    }

    /** The first row that matches {@code device}. */
    public Optional<MatchEntry> match(Device device) {
        for (MatchEntry e : entries) {
            if (device.matches(e)) {
                return Optional.of(e);
            }
        }
        return Optional.empty();
    }
}
