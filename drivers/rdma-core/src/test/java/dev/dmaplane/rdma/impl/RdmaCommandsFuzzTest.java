package dev.dmaplane.rdma.impl;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.Fixture;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.testing.FuzzRuns;
import dev.dmaplane.testing.GogoCommands;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Fuzz target of the {@code rdma:} Gogo commands (iproute2's {@code rdma dev}, {@code rdma link},
 * {@code rdma resource show}, {@code rdma statistic show}): the functions the component registers, called as the shell
 * calls them with fuzzed string arguments, between fuzzed verbs that open and close contexts and create the objects
 * {@code res} lists (PDs, CQs, QPs, MRs) on the default machine's two HCAs. The rule is the issue's: a command answers
 * with its text or an {@code ErrnoException}, within 2 s; anything else is a finding. Every context an input opened
 * is closed at its end. Regression inputs are in {@code RdmaCommandsFuzzTestInputs/commands/}.
 */
class RdmaCommandsFuzzTest {
    private static final FuzzRuns RUNS = new FuzzRuns("rdma-commands", Duration.ofSeconds(2));
    private static final List<String> WORDS = List.of("show", "dev", "rxe0", "rxe1", "rxe2", "link", "rxe0/1",
            "rxe0/2", "res", "qp", "cq", "pd", "mr", "ctx", "srq", "statistic", "-j", "-p", "-jp", "-d", "", "0", "-1",
            "lqpn", "type", "state", "pid", "RC", "16-18", "1,2", "99999999999");
    private static final QpType[] QP_TYPES = {QpType.RC, QpType.UC, QpType.UD};
    private static final int[] ACCESS = {0, Access.LOCAL_WRITE, Fixture.ALL_REMOTE, Access.REMOTE_WRITE,
            Access.ZERO_BASED | Access.LOCAL_WRITE, Access.ON_DEMAND | Fixture.ALL_REMOTE, Access.MW_BIND, -1};
    private static Fixture f;
    private static GogoCommands commands;
    private static long buffer;

    @BeforeAll
    static void boot() {
        f = new Fixture();
        commands = GogoCommands.of(new RdmaCommands(f.core));
        buffer = f.alloc(1 << 16);
    }

    @AfterAll
    static void shutdown() {
        RUNS.report();
        f.close();
    }

    /** A verbs object and the context it was made in (closing the context destroys it). */
    private record Made<T>(VerbsContext context, T object) {
    }

    /**
     * Up to 16 steps, each a verb on the objects made so far or a command line; the first refused step ends the
     * sequence (its errno is the input's outcome). Then the contexts close and every command runs once more.
     */
    @FuzzTest
    void commands(FuzzedDataProvider data) {
        StringBuilder input = new StringBuilder();
        RUNS.run(input::toString, () -> {
            List<VerbsContext> contexts = new ArrayList<>();
            List<Made<ProtectionDomain>> pds = new ArrayList<>();
            List<Made<CompletionQueue>> cqs = new ArrayList<>();
            int steps = data.consumeInt(1, 16);
            String outcome = FuzzRuns.ACCEPTED;
            try {
                for (int i = 0; i < steps && data.remainingBytes() > 0; i++) {
                    step(data, input, contexts, pds, cqs);
                }
            } catch (ErrnoException e) {
                outcome = e.errno().name();
            } finally {
                contexts.forEach(VerbsContext::close);
            }
            input.append("closed every context\n");
            for (String function : commands.functions()) {
                input.append("rdma:").append(function).append('\n');
                commands.call(function, List.of());
            }
            return outcome;
        });
    }

    private static void step(FuzzedDataProvider data, StringBuilder input, List<VerbsContext> contexts,
                             List<Made<ProtectionDomain>> pds, List<Made<CompletionQueue>> cqs) {
        switch (data.consumeInt(0, 6)) {
            case 0 -> {
                String dev = data.pickValue(new String[]{"rxe0", "rxe1"});
                input.append("open ").append(dev).append('\n');
                contexts.add(f.core.device(dev).orElseThrow().open(f.mm));
            }
            case 1 -> {
                if (contexts.isEmpty()) {
                    return;
                }
                input.append("alloc_pd\n");
                VerbsContext c = data.pickValue(contexts);
                pds.add(new Made<>(c, c.allocPd()));
            }
            case 2 -> {
                if (contexts.isEmpty()) {
                    return;
                }
                int cqe = data.consumeInt(-1, 1 << 17);
                int vector = data.consumeInt(-1, 2);
                input.append("create_cq ").append(cqe).append(' ').append(vector).append('\n');
                VerbsContext c = data.pickValue(contexts);
                cqs.add(new Made<>(c, c.createCq(cqe, null, vector)));
            }
            case 3 -> {
                if (pds.isEmpty() || cqs.isEmpty()) {
                    return;
                }
                QpType type = data.pickValue(QP_TYPES);
                int depth = data.consumeInt(0, 1 << 15);
                boolean connect = data.consumeBoolean();
                input.append("create_qp ").append(type).append(' ').append(depth).append(connect ? " connect\n" : "\n");
                QueuePair qp = data.pickValue(pds).object().createQp(Fixture.qpInit(data.pickValue(cqs).object(), type, depth));
                if (connect) {
                    Fixture.connect(qp, qp.qpNum());
                }
            }
            case 4 -> {
                if (pds.isEmpty()) {
                    return;
                }
                long offset = data.consumeLong(-1, 1 << 16);
                long length = data.consumeLong(-1, 1 << 17);
                int access = data.pickValue(ACCESS);
                input.append("reg_mr +").append(offset).append(' ').append(length).append(' ').append(access).append('\n');
                data.pickValue(pds).object().regMr(buffer + offset, length, access);
            }
            case 5 -> {
                if (contexts.isEmpty()) {
                    return;
                }
                VerbsContext c = data.pickValue(contexts);
                input.append("close ").append(c.deviceName()).append('\n');
                contexts.remove(c);
                pds.removeIf(m -> m.context() == c);
                cqs.removeIf(m -> m.context() == c);
                c.close();
            }
            default -> {
                String function = data.pickValue(commands.functions());
                List<String> args = GogoCommands.arguments(data, WORDS, 2);
                input.append(commands.commandLine(function, args)).append('\n');
                commands.call(function, args);
            }
        }
    }
}
