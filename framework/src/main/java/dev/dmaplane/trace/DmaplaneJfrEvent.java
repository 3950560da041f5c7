package dev.dmaplane.trace;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;

/** The JFR mirror of a {@link TraceEvent}, so a flight recording shows dmaplane's DMA activity beside the JVM's. */
@Name("dev.dmaplane.Trace")
@Label("dmaplane trace event")
@Category({"dmaplane"})
@Description("A pin, map, fault, bind or other event of the simulated machine")
final class DmaplaneJfrEvent extends jdk.jfr.Event {
    @Label("Kind")
    String kind;
    @Label("Device")
    String device;
    @Label("Address")
    long address;
    @Label("Length")
    long length;
    @Label("Detail")
    String detail;
}
