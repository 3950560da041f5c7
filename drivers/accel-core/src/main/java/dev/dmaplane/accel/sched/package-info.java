/** The GPU scheduler (drm_sched): entities with priorities, jobs with dependencies, scheduled and finished fences, credits, timeouts. */
@Export
@Version("1.0.0")
package dev.dmaplane.accel.sched;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
