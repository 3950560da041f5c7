package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

import java.time.Duration;
import java.util.Optional;

/**
 * A completion channel ({@code ibv_create_comp_channel}): where armed CQs report. Destroying it while a CQ uses it
 * fails with {@code EBUSY}.
 */
@ProviderType
public interface CompletionChannel extends VerbsObject {
    /** {@code ibv_get_cq_event} without blocking. */
    Optional<CompletionQueue> pollCqEvent();

    /** {@code ibv_get_cq_event}: waits up to {@code timeout}. */
    Optional<CompletionQueue> getCqEvent(Duration timeout);
}
