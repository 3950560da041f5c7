package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.ResourceEntry;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * {@code rdma resource show} ({@code rdma/res.c} and {@code res-qp.c}, {@code res-cq.c}, {@code res-mr.c},
 * {@code res-pd.c}, {@code res-ctx.c}, {@code res-srq.c} of iproute2): the summary line per device, then each object
 * type's columns in the tool's order, selected by {@code link DEV[/PORT]} or {@code dev DEV} and by the type's
 * filters ({@code rdma/utils.c}: numbers as {@code N}, {@code N-M} and comma lists, strings case-insensitively, an
 * object without the filtered attribute left out).
 */
final class RdmaResources {
    static final String USAGE = "rdma:res [-j|-p] [show [DEV]] | rdma:res [-j|-p] show qp|cq|mr|pd|ctx|srq "
            + "[link DEV[/PORT]|dev DEV] [FILTER-NAME FILTER-VALUE]...";
    /** The kernel's summary names ({@code rdma_restrack_type}) in {@code fill_res_info}'s order. */
    private static final List<String> SUMMARY = List.of("pd", "cq", "qp", "cm_id", "mr", "ctx", "srq");
    /** Each object type's filters, numeric unless named in {@link #STRING_FILTERS}. */
    private static final Map<String, List<String>> FILTERS = Map.of(
            "qp", List.of("lqpn", "rqpn", "pdn", "rq-psn", "sq-psn", "path-mig-state", "type", "state", "pid"),
            "cq", List.of("cqn", "users", "ctxn", "pid"),
            "mr", List.of("mrn", "mrlen", "pdn", "pid"),
            "pd", List.of("pdn", "users", "ctxn", "pid"),
            "ctx", List.of("ctxn", "pid"),
            "srq", List.of("srqn", "type", "pdn", "lqpn", "pid"));
    private static final Set<String> STRING_FILTERS = Set.of("type", "state", "path-mig-state");
    private static final String NUMBER_CHARS = "1234567890,-";

    private RdmaResources() {
    }

    static String show(RdmaCore core, RdmaArgs args) {
        List<String> w = args.words();
        if (!w.isEmpty() && !Set.of("show", "list").contains(w.getFirst())) {
            throw RdmaCommands.wrong("rdma:res", args, "unknown resource command '" + w.getFirst() + "' (show)", USAGE);
        }
        String what = args.word(1);
        if (what == null || core.device(what).isPresent()) {
            if (w.size() > 2) {
                throw RdmaCommands.wrong("rdma:res", args, "unexpected '" + w.get(2) + "'", USAGE);
            }
            return summary(core, args, what);
        }
        if (!FILTERS.containsKey(what)) {
            throw RdmaCommands.wrong("rdma:res", args, "'" + what + "' is neither an object type (qp, cq, mr, pd, "
                    + "ctx, srq) nor an RDMA device", USAGE);
        }
        return objects(core, args, what, w.subList(2, w.size()));
    }

    private static String summary(RdmaCore core, RdmaArgs args, String name) {
        List<RdmaRow> rows = new ArrayList<>();
        for (RdmaDevice d : core.devices()) {
            if (name != null && !d.name().equals(name)) {
                continue;
            }
            Map<String, Long> count = new LinkedHashMap<>();
            SUMMARY.forEach(s -> count.put(s, 0L));
            List<ContextImpl> contexts = ((DeviceImpl) d).openContexts();
            count.put("ctx", (long) contexts.size());
            for (ContextImpl c : contexts) {
                for (ResourceEntry e : c.resources()) {
                    count.computeIfPresent(e.type(), (k, v) -> v + 1);
                }
            }
            RdmaRow.Builder b = new RdmaRow.Builder().json("ifindex", d.index()).text(d.index() + ":")
                    .json("ifname", d.name()).text(d.name() + ":");
            count.forEach(b::put);
            rows.add(b.build());
        }
        return rows.isEmpty() && !args.json() ? "no RDMA devices" : RdmaRow.render(rows, args);
    }

    /** One object: its device, the values its filters see, and its row. */
    private record Listed(Map<String, String> values, RdmaRow row) {
    }

    private static String objects(RdmaCore core, RdmaArgs args, String type, List<String> rest) {
        String device = null;
        Integer port = null;
        Map<String, String> filters = new LinkedHashMap<>();
        for (int i = 0; i < rest.size(); i += 2) {
            String key = rest.get(i);
            if (i + 1 >= rest.size()) {
                throw RdmaCommands.wrong("rdma:res", args, "'" + key + "' needs a value", USAGE);
            }
            String value = rest.get(i + 1);
            if (key.equals("link") || key.equals("dev")) {
                String name = value.contains("/") ? value.substring(0, value.indexOf('/')) : value;
                RdmaDevice d = core.device(name).orElseThrow(() -> noDevice(core, args, name));
                device = name;
                if (value.contains("/")) {
                    if (key.equals("dev") || !type.equals("qp")) {
                        throw RdmaCommands.wrong("rdma:res", args, "'" + value + "': a port selects QPs only "
                                + "(link DEV/PORT)", USAGE);
                    }
                    port = RdmaCommands.port(args, "rdma:res", value, d, USAGE);
                }
            } else if (!FILTERS.get(type).contains(key)) {
                throw RdmaCommands.wrong("rdma:res", args, "unknown filter '" + key + "' for " + type + " (filters: "
                        + String.join(", ", FILTERS.get(type)) + ")", USAGE);
            } else {
                if (!STRING_FILTERS.contains(key) && (value.isEmpty()
                        || !value.chars().allMatch(c -> NUMBER_CHARS.indexOf(c) >= 0))) {
                    throw RdmaCommands.wrong("rdma:res", args, key + " filter '" + value + "' accepts \""
                            + NUMBER_CHARS + "\" characters only", USAGE);
                }
                filters.put(key, value);
            }
        }
        List<RdmaRow> rows = new ArrayList<>();
        for (RdmaDevice rd : core.devices()) {
            DeviceImpl d = (DeviceImpl) rd;
            if (device != null && !d.name().equals(device)) {
                continue;
            }
            for (Listed l : list(d, type)) {
                if (port != null && !Integer.toString(port).equals(l.values().get("port"))) {
                    continue;
                }
                if (selected(args, l.values(), filters)) {
                    rows.add(l.row());
                }
            }
        }
        return rows.isEmpty() && !args.json() ? "" : RdmaRow.render(rows, args);
    }

    private static ErrnoException noDevice(RdmaCore core, RdmaArgs args, String name) {
        return RdmaCommands.noDevice(core, "rdma:res", args, name, USAGE);
    }

    /** Every object of {@code type} on {@code d}, in context order, then handle order. */
    private static List<Listed> list(DeviceImpl d, String type) {
        List<Listed> out = new ArrayList<>();
        for (ContextImpl c : d.openContexts()) {
            int pid = d.core.pid(c.mm);
            String comm = comm(c.mm.name());
            int ctxn = c.uctx.id();
            if (type.equals("ctx")) {
                Map<String, String> v = Map.of("ctxn", Integer.toString(ctxn), "pid", Integer.toString(pid));
                out.add(new Listed(v, dev(d).put("ctxn", ctxn).put("pid", pid).put("comm", comm).build()));
                continue;
            }
            List<ResourceEntry> entries = c.resources();
            for (ResourceEntry e : entries) {
                if (!e.type().equals(type)) {
                    continue;
                }
                Map<String, String> v = new LinkedHashMap<>(e.attrs());
                v.put("ctxn", Integer.toString(ctxn));
                v.put("pid", Integer.toString(pid));
                RdmaRow.Builder b = switch (type) {
                    case "qp" -> qp(d, v);
                    case "cq" -> dev(d).put("cqn", num(v, "cqn")).put("cqe", num(v, "cqe"))
                            .put("users", num(v, "users")).put("ctxn", ctxn);
                    case "mr" -> dev(d).put("mrn", num(v, "mrn")).key("rkey", hex(v, "rkey"))
                            .key("lkey", hex(v, "lkey")).key("iova", hex(v, "iova")).put("mrlen", num(v, "mrlen"))
                            .put("pdn", num(v, "pdn"));
                    case "pd" -> dev(d).put("pdn", num(v, "pdn")).put("users", num(v, "users"))
                            .put("ctxn", ctxn);
                    default -> srq(d, v, entries);
                };
                out.add(new Listed(v, b.put("pid", pid).put("comm", comm).build()));
            }
        }
        return out;
    }

    /** {@code res_qp_line}: link, lqpn, rqpn, type, state, rq-psn, sq-psn, path-mig-state, pdn. */
    private static RdmaRow.Builder qp(DeviceImpl d, Map<String, String> v) {
        RdmaRow.Builder b = new RdmaRow.Builder().json("ifindex", d.index()).json("ifname", d.name());
        String port = v.get("port");
        if (port != null) {
            b.json("port", Long.parseLong(port));
        }
        b.text("link " + d.name() + "/" + (port == null ? "-" : port)).put("lqpn", num(v, "lqpn"));
        boolean connected = v.get("type").equals("RC") || v.get("type").equals("UC");
        if (connected) {
            v.putIfAbsent("rqpn", "0");
            b.put("rqpn", num(v, "rqpn"));
        } else {
            v.remove("rq-psn");
        }
        b.put("type", v.get("type")).put("state", v.get("state"));
        if (connected) {
            b.put("rq-psn", num(v, "rq-psn"));
        }
        b.put("sq-psn", num(v, "sq-psn"));
        if (v.containsKey("path-mig-state")) {
            b.put("path-mig-state", v.get("path-mig-state"));
        }
        return b.put("pdn", num(v, "pdn"));
    }

    /** {@code res_srq_line}: srqn, type, the QPs attached to it, pdn. */
    private static RdmaRow.Builder srq(DeviceImpl d, Map<String, String> v, List<ResourceEntry> entries) {
        List<String> qps = entries.stream().filter(e -> e.type().equals("qp") && v.get("srqn").equals(e.attrs().get("srqn")))
                .map(e -> e.attrs().get("lqpn")).toList();
        v.put("type", "BASIC");
        RdmaRow.Builder b = dev(d).put("srqn", num(v, "srqn")).put("type", "BASIC");
        if (!qps.isEmpty()) {
            v.put("lqpn", String.join(",", qps));
            b.text("lqpn " + String.join(",", qps)).json("lqpn", qps);
        }
        return b.put("pdn", num(v, "pdn"));
    }

    /** {@code print_dev}: {@code dev NAME}, JSON ifindex and ifname. */
    private static RdmaRow.Builder dev(DeviceImpl d) {
        return new RdmaRow.Builder().json("ifindex", d.index()).json("ifname", d.name()).text("dev " + d.name());
    }

    /** Whether every filter takes the object; a filtered attribute the object lacks leaves it out. */
    private static boolean selected(RdmaArgs args, Map<String, String> values, Map<String, String> filters) {
        for (Map.Entry<String, String> f : filters.entrySet()) {
            String have = values.get(f.getKey());
            if (have == null) {
                return false;
            }
            boolean match = STRING_FILTERS.contains(f.getKey())
                    ? List.of(f.getValue().split(",")).stream().anyMatch(s -> s.equalsIgnoreCase(have))
                    : List.of(have.split(",")).stream().anyMatch(h -> inNumbers(args, f.getKey(), f.getValue(), h));
            if (!match) {
                return false;
            }
        }
        return true;
    }

    /** {@code rd_check_is_filtered}: {@code value} in one of {@code N} or {@code N-M} of the comma list. */
    private static boolean inNumbers(RdmaArgs args, String key, String list, String value) {
        long v = Long.parseLong(value);
        for (String item : list.split(",")) {
            if (item.isEmpty()) {
                continue;
            }
            String[] ends = item.split("-", -1);
            if (ends.length > 2 || ends[0].isEmpty() || (ends.length == 2 && ends[1].isEmpty())
                    || ends[0].length() > 10 || (ends.length == 2 && ends[1].length() > 10)) {
                throw RdmaCommands.wrong("rdma:res", args, key + " filter '" + list + "': '" + item
                        + "' is not N or N-M with N, M below 2^32", USAGE);
            }
            long lo = Long.parseLong(ends[0]);
            long hi = ends.length == 2 ? Long.parseLong(ends[1]) : lo;
            if (v >= lo && v <= hi) {
                return true;
            }
        }
        return false;
    }

    private static long num(Map<String, String> v, String key) {
        return Long.parseLong(v.get(key));
    }

    private static long hex(Map<String, String> v, String key) {
        return Long.parseUnsignedLong(v.get(key).substring(2), 16);
    }

    /** The task's {@code comm}: at most 15 characters ({@code TASK_COMM_LEN}). */
    private static String comm(String name) {
        String s = name.strip().replace(' ', '_');
        return s.length() > 15 ? s.substring(0, 15) : s;
    }
}
