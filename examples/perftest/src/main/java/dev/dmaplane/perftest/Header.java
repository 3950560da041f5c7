package dev.dmaplane.perftest;

import dev.dmaplane.perftest.Perftest.Far;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.PortAttr;

import java.util.Random;

import static dev.dmaplane.perftest.Perftest.LINE;

/**
 * perftest's header ({@code perftest_parameters.c}: {@code ctx_print_test_info}) and address lines
 * ({@code perftest_communication.c}: {@code ctx_print_pingpong_data}), field by field, with the values of this run.
 */
final class Header {
    /** Which end prints: perftest's {@code machine} (client, server), or both ends in this process. */
    enum Role {
        CLIENT, SERVER, BOTH
    }

    /** The CQEs a bandwidth tool's poll takes at once ({@code CQE Poll Batch}). */
    static final int POLL_BATCH = 64;
    /** Receives send_lat keeps posted on each end. */
    static final int LAT_RECVS = 4;

    private Header() {
    }

    /**
     * perftest's first PSNs: random 24-bit numbers from {@code lrand48} seeded with {@code getpid() * time(NULL)}
     * ({@code perftest_communication.c}: {@code set_up_connection}); a run of this process seeds its generator alike.
     */
    static Random psns() {
        return new Random(ProcessHandle.current().pid() * (System.currentTimeMillis() / 1000));
    }

    /** The next first PSN from {@code r}: 24 bits, as {@code lrand48() & 0xffffff}. */
    static int psn(Random r) {
        return r.nextInt(1 << 24);
    }

    /**
     * The header block up to its closing line: the title, then {@code ctx_print_test_info}'s fields for
     * {@code role} on {@code me} ({@code device} names it as the run sees it).
     */
    static String info(PerfConfig cfg, String device, Side me, Role role) {
        StringBuilder b = new StringBuilder();
        if (!cfg.test().latency && !cfg.noPeak() && !cfg.measuresPeak()) { // duration mode, or over 20000 iterations
            b.append(" WARNING: BW peak won't be measured in this run.\n"); // as perftest says
        }
        b.append(LINE).append('\n');
        b.append(" ".repeat(20)).append(title(cfg)).append('\n');
        if (cfg.events()) {
            b.append(String.format(" Test with events. Using %s_comp%d%n", me.name, 0));
        }
        PortAttr port = me.ctx.queryPort(1);
        b.append(String.format(" Dual-port       : OFF\t\tDevice         : %s%n", device));
        // transport_str: IB for InfiniBand and RoCE, IW for iWARP
        b.append(String.format(" Number of qps   : %d\t\tTransport type : %s%n", cfg.qps(), me.iwarp ? "IW" : "IB"));
        b.append(String.format(" Connection type : %s\t\tUsing SRQ      : %s%n", cfg.connection(), onOff(cfg.srq())));
        // the MRs are registered without IBV_ACCESS_RELAXED_ORDERING; no thread domains in these verbs
        b.append(" PCIe relax order: OFF\t\tLock-free      : Unsupported\n");
        // work requests are posted with ibv_post_send, not ibv_wr_start .. ibv_wr_complete
        b.append(" ibv_wr* API     : OFF\t\tUsing Enhanced Reorder      : OFF\n");
        if (role != Role.SERVER || cfg.bidirectional()) {
            b.append(String.format(" TX depth        : %d%n", cfg.txDepth()));
        }
        if (cfg.postList() > 1) {
            b.append(String.format(" Post List       : %d%n", cfg.postList()));
        }
        boolean receives = cfg.test() == PerfConfig.Test.SEND_BW || cfg.test() == PerfConfig.Test.SEND_LAT;
        if (receives && (role != Role.CLIENT || cfg.bidirectional())) {
            b.append(String.format(" RX depth        : %d%n",
                    cfg.test() == PerfConfig.Test.SEND_LAT ? LAT_RECVS : me.recvTarget));
        }
        if (!cfg.test().latency) {
            b.append(String.format(" CQ Moderation   : %d%n", cfg.cqMod()));
            b.append(String.format(" CQE Poll Batch  : %d%n", POLL_BATCH));
        }
        b.append(String.format(" Mtu             : %d[B]%n", port.activeMtu().bytes()));
        b.append(String.format(" Link type       : %s%n", port.linkLayer() == LinkLayer.ETHERNET ? "Ethernet" : "IB"));
        b.append(String.format(" GID index       : %d%n", Perftest.GID_INDEX));
        if (cfg.test() == PerfConfig.Test.READ_BW || cfg.test() == PerfConfig.Test.READ_LAT || cfg.test().atomic()) {
            b.append(String.format(" Outstand reads  : %d%n", Perftest.outReads(me.ctx)));
        } else {
            b.append(String.format(" Max inline data : %d[B]%n", me.qps[0].cap().maxInlineData()));
        }
        // -R, and iWARP, whose QPs connect only through the rdma_cm (as perftest forces it there); the exchange
        // stays on TCP
        b.append(" rdma_cm QPs\t : ").append(onOff(me.iwarp || cfg.rdmaCm())).append('\n');
        b.append(" Data ex. method : Ethernet\n");
        b.append(LINE).append('\n');
        return b.toString();
    }

    /** perftest's title: the verb, Bidirectional and Post List when they apply, BW or Latency. */
    static String title(PerfConfig cfg) {
        String t = cfg.test().title;
        String kind = cfg.test().latency ? " Latency Test" : " BW Test";
        StringBuilder b = new StringBuilder(t.substring(0, t.length() - kind.length())).append(' ');
        if (!cfg.test().latency) {
            b.append(cfg.bidirectional() ? "Bidirectional " : "").append(cfg.postList() > 1 ? "Post List " : "");
        }
        return b.append(kind.strip()).toString();
    }

    /** The address lines of every QP: this end's ({@code local}), then the other's ({@code remote}). */
    static String addresses(PerfConfig cfg, Side me, Far other) {
        StringBuilder b = new StringBuilder();
        int lid = me.ctx.queryPort(1).lid();
        int reads = Perftest.outReads(me.ctx);
        for (int q = 0; q < cfg.qps(); q++) {
            b.append(address(cfg, "local", lid, me.qpn(q), me.psn(q), reads, me.rkey(), me.dst(q), me.gid()));
        }
        for (int q = 0; q < cfg.qps(); q++) {
            b.append(address(cfg, "remote", lid, other.qpn(q), other.psn(q), reads, other.rkey(), other.dst(q),
                    other.gid()));
        }
        return b.toString();
    }

    /**
     * One QP's {@code local address: LID ... QPN ... PSN ...} line (READ tools add {@code OUT}, READ and WRITE tools
     * {@code RKey} and {@code VAddr}), in C's {@code %#0Nx} shapes, and its {@code GID:} line, bytes in decimal.
     */
    static String address(PerfConfig cfg, String side, int lid, int qpn, int psn, int outReads, int rkey, long vaddr,
                          Gid gid) {
        StringBuilder b = new StringBuilder(" ").append(side).append(" address: LID ").append(cHex(lid, 4))
                .append(" QPN ").append(cHex(qpn, 6)).append(" PSN ").append(cHex(psn, 6));
        PerfConfig.Test t = cfg.test();
        if (t == PerfConfig.Test.READ_BW || t == PerfConfig.Test.READ_LAT) {
            b.append(" OUT ").append(cHex(outReads, 4));
        }
        if (t == PerfConfig.Test.READ_BW || t == PerfConfig.Test.READ_LAT || t == PerfConfig.Test.WRITE_BW
                || t == PerfConfig.Test.WRITE_LAT) {
            b.append(" RKey ").append(cHex(rkey & 0xffffffffL, 8)).append(" VAddr ").append(cHex(vaddr, 16));
        }
        b.append('\n').append(" GID: ");
        byte[] raw = gid.raw();
        for (int i = 0; i < raw.length; i++) {
            b.append(i == 0 ? "" : ":").append(String.format("%02d", raw[i] & 0xff));
        }
        return b.append('\n').toString();
    }

    /**
     * C's {@code printf("%#0<width>x", v)}: {@code 0x} and hex digits, zero-padded to {@code width} characters in all;
     * zero has no prefix and is all zeros.
     */
    static String cHex(long v, int width) {
        String digits = Long.toHexString(v);
        if (v == 0) {
            return "0".repeat(Math.max(1, width));
        }
        return "0x" + "0".repeat(Math.max(0, width - 2 - digits.length())) + digits;
    }

    private static String onOff(boolean on) {
        return on ? "ON" : "OFF";
    }
}
