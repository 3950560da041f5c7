package dev.dmaplane.gpudirect;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.gpudirect.GpuDirectReport.Check;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/** The report as it is written: sections, notes and checks, each line also handed to a sink as it comes. */
final class Printout {
    private final StringBuilder text = new StringBuilder();
    private final List<Check> checks = new ArrayList<>();
    private final List<Transfer> transfers = new ArrayList<>();
    private final Consumer<String> sink;
    private Scenario scenario;

    Printout(Consumer<String> sink) {
        this.sink = sink;
    }

    void section(Scenario s, String title) {
        scenario = s;
        line("");
        line("[" + (s.ordinal() + 1) + "] " + title);
    }

    void note(String fmt, Object... args) {
        line("  " + String.format(fmt, args));
    }

    /** Prints the check as {@code ok} or {@code FAILED} and records it. */
    boolean check(boolean ok, String fmt, Object... args) {
        String what = String.format(fmt, args);
        checks.add(new Check(scenario, ok, what));
        line("  " + (ok ? "ok    " : "FAILED") + " " + what);
        return ok;
    }

    /** A scenario that ended with an exception: a failed check naming its errno and message. */
    void failed(Scenario s, RuntimeException e) {
        scenario = s;
        String why = e instanceof ErrnoException ee ? ee.errno() + ": " + ee.getMessage() : e.toString();
        check(false, "%s ended early: %s", scenario, why);
    }

    void transfer(Transfer t) {
        transfers.add(t);
    }

    private void line(String l) {
        text.append(l).append('\n');
        sink.accept(l);
    }

    GpuDirectReport report() {
        return new GpuDirectReport(text.toString(), checks, transfers);
    }
}
