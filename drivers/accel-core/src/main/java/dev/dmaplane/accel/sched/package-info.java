/**
 * The GPU scheduler (drm_sched, {@code drivers/gpu/drm/scheduler/}): entities with priorities, jobs with
 * dependencies, scheduled and finished fences, credits, timeouts.
 * <p>
 * A driver creates one {@link dev.dmaplane.accel.sched.Scheduler} per hardware ring with its
 * {@link dev.dmaplane.accel.sched.SchedBackend}; submitters create a
 * {@link dev.dmaplane.accel.sched.SchedEntity} each and submit a
 * {@link dev.dmaplane.accel.sched.SchedJob} by {@code init}, dependencies, {@code arm}, {@code push}. The
 * scheduler's worker thread calls {@code runJob} once the job's dependencies have signalled and the ring has room;
 * the finished fence signals when the hardware fence does, with its error. Locking: the scheduler has one lock,
 * never held while a fence signals or a backend hook runs, so hooks may signal fences and call back into the
 * scheduler ({@code stop}, {@code start} from {@code timedOutJob}). Teardown errors: {@code ECANCELED} for jobs
 * cancelled by an entity kill, a reset that lost them or {@code fini}; {@code ETIME} for the job that hung.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.accel.sched;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
