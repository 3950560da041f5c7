package dev.dmaplane.vfio.nvme.model;

import java.util.HashSet;
import java.util.Set;

/** A controller's queue pairs (NVM Express Base Specification 2.0, 3.3.1 Memory-Based Transport Queue Model). */
final class Queues {
    private Queues() {
    }

    /**
     * A submission queue: the host owns the tail (its doorbell), the controller the head. Guarded by the controller.
     */
    static final class Sq {
        final int qid;
        final long base;
        final int entries;
        final Cq cq;
        int head;
        int tail;
        /** Identifiers of commands taken but not completed (Asynchronous Event Requests). */
        final Set<Integer> outstanding = new HashSet<>();
        /** An engine runs a command of this queue outside the lock. */
        boolean inFlight;

        Sq(int qid, long base, int entries, Cq cq) {
            this.qid = qid;
            this.base = base;
            this.entries = entries;
            this.cq = cq;
        }

        boolean hasCommands() {
            return head != tail;
        }
    }

    /**
     * A completion queue: the controller owns the tail and the phase tag it writes, the host the head (its
     * doorbell). Full when the tail, moved on by the entries engines reserved for the commands they run, is one
     * behind the head: the controller then takes no command whose completion would land here, so two submission
     * queues sharing it never post more than it holds. Guarded by the controller.
     */
    static final class Cq {
        final int qid;
        final long base;
        final int entries;
        final int vector;
        final boolean interrupts;
        int head;
        int tail;
        boolean phase = true;
        int sqs;
        /** Entries reserved for commands engines are running. */
        int reserved;
        /** An engine skipped a command because this queue was full: a head doorbell wakes the engines. */
        boolean stalled;

        Cq(int qid, long base, int entries, int vector, boolean interrupts) {
            this.qid = qid;
            this.base = base;
            this.entries = entries;
            this.vector = vector;
            this.interrupts = interrupts;
        }

        boolean full() {
            return (tail - head + entries) % entries + reserved >= entries - 1;
        }

        /** Moves the tail past the entry just written, inverting the phase tag on wrap. */
        void advance() {
            tail = (tail + 1) % entries;
            if (tail == 0) {
                phase = !phase;
            }
        }
    }
}
