package dev.dmaplane.gpudirect;

import java.util.List;
import java.util.Optional;

/**
 * What a run printed and checked.
 *
 * @param text      the printed report, one section per scenario
 * @param checks    every check, in order
 * @param transfers the measured deliveries ({@code p2p}, {@code bounce})
 */
public record GpuDirectReport(String text, List<Check> checks, List<Transfer> transfers) {
    /** One check: what it claims, and whether it held. */
    public record Check(Scenario scenario, boolean ok, String what) {
    }

    public GpuDirectReport {
        checks = List.copyOf(checks);
        transfers = List.copyOf(transfers);
    }

    /** Whether every check held. */
    public boolean passed() {
        return checks.stream().allMatch(Check::ok);
    }

    public List<Check> failures() {
        return checks.stream().filter(c -> !c.ok()).toList();
    }

    public Optional<Transfer> transfer(String path) {
        return transfers.stream().filter(t -> t.path().equals(path)).findFirst();
    }
}
