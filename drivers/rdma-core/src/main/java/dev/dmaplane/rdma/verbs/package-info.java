/**
 * The verbs: what an application uses, after libibverbs ({@code infiniband/verbs.h} and its man pages). A
 * {@link dev.dmaplane.rdma.verbs.VerbsContext} opened on an RDMA device holds protection domains, memory regions
 * and windows, completion queues and channels, queue pairs, shared receive queues and address handles, each by
 * handle; work requests ({@link dev.dmaplane.rdma.verbs.SendWr}, {@link dev.dmaplane.rdma.verbs.RecvWr}) and work
 * completions ({@link dev.dmaplane.rdma.verbs.WorkCompletion}) carry the numeric values of {@code ib_verbs.h}.
 * Every call validates what libibverbs, uverbs and the providers validate, fails with the errno they return and
 * changes nothing when it fails (except {@code post_send}/{@code post_recv}, which keep the work requests before
 * the bad one posted, as {@code bad_wr} says).
 */
@Export
@Version("1.3.0")
package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
