package dev.dmaplane.launcher;

import jdk.jfr.Configuration;
import jdk.jfr.Recording;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.text.ParseException;

/**
 * {@code --jfr FILE}: a JDK Flight Recorder recording around a command, with the JVM's {@code default} settings and
 * dmaplane's trace events ({@code dev.dmaplane.Trace}: kind, device, address, length, detail) and work requests
 * ({@code dev.dmaplane.WorkRequest} posted, {@code dev.dmaplane.WorkCompletion} completed), written to FILE when
 * the command ends or the JVM exits, for {@code jfr print} and JDK Mission Control.
 */
final class FlightRecording implements AutoCloseable {
    /** The JFR name of the framework's trace mirror ({@code dev.dmaplane.trace.DmaplaneJfrEvent}). */
    static final String TRACE_EVENT = "dev.dmaplane.Trace";
    /** The JFR name of a posted work request ({@code dev.dmaplane.trace.WorkRequestJfrEvent}). */
    static final String WORK_REQUEST_EVENT = "dev.dmaplane.WorkRequest";
    /** The JFR name of a work completion ({@code dev.dmaplane.trace.WorkCompletionJfrEvent}). */
    static final String WORK_COMPLETION_EVENT = "dev.dmaplane.WorkCompletion";

    private final Recording recording;
    private final Path file;
    private final PrintStream out;

    private FlightRecording(Recording recording, Path file, PrintStream out) {
        this.recording = recording;
        this.file = file;
        this.out = out;
    }

    /** Starts recording into {@code file}; null starts nothing. */
    static FlightRecording start(Path file, PrintStream out) throws IOException {
        if (file == null) {
            return null;
        }
        Recording r;
        try {
            r = new Recording(Configuration.getConfiguration("default"));
        } catch (ParseException e) {
            throw new IllegalStateException("the JDK's 'default' JFR settings do not parse: " + e.getMessage(), e);
        }
        r.setName("dmaplane");
        r.enable(TRACE_EVENT);
        r.enable(WORK_REQUEST_EVENT);
        r.enable(WORK_COMPLETION_EVENT);
        r.setDestination(file);
        r.setDumpOnExit(true); // an interrupted 'run' still leaves its recording
        r.start();
        return new FlightRecording(r, file, out);
    }

    /** Stops the recording, which writes it to the file. */
    @Override
    public void close() {
        recording.stop();
        recording.close();
        out.println("dmaplane: flight recording written to " + file + " (jfr print --events " + TRACE_EVENT + " "
                + file + ")");
    }
}
