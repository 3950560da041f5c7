package dev.dmaplane.rdma.verbs;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One object as {@code rdma resource show} lists it: device, owning context, type ({@code pd}, {@code mr},
 * {@code cq}, {@code qp}, {@code srq}, {@code mw}, {@code ah}, {@code comp_channel}), handle, and the type's
 * attributes in the tool's names ({@code lqpn}, {@code state}, {@code rkey}, {@code mrlen}, ...).
 */
public record ResourceEntry(String device, int context, String type, int handle, Map<String, String> attrs) {
    public ResourceEntry {
        attrs = Collections.unmodifiableMap(new LinkedHashMap<>(attrs));
    }

    /** One line: {@code dev rxe0 ctx 0 qp 3 lqpn 17 type RC state RTS ...}. */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("dev ").append(device).append(" ctx ").append(context).append(' ')
                .append(type).append(' ').append(handle);
        attrs.forEach((k, v) -> sb.append(' ').append(k).append(' ').append(v));
        return sb.toString();
    }
}
