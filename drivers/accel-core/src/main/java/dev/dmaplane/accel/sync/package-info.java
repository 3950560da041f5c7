/**
 * Sync objects, binary and timeline (drm_syncobj, {@code drivers/gpu/drm/drm_syncobj.c}), sync_file
 * ({@code drivers/dma-buf/sync_file.c}) with export and import of a dma-buf's fences ({@code dma-buf.c}), and
 * multi-object locking as {@code drm_exec} ({@code drivers/gpu/drm/drm_exec.c}).
 * <p>
 * Waits are bounded: a sync-object wait whose timeout passes is {@code ETIME}. Flags are the uAPI's bit values
 * ({@code include/uapi/drm/drm.h}, {@code include/uapi/linux/dma-buf.h}); unknown bits are {@code EINVAL}. A handle
 * table mapping user handles to {@link dev.dmaplane.accel.sync.SyncObj}s belongs to the user API.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.accel.sync;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
