package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.stream.Stream;

/**
 * One submission ({@code DRM_IOCTL_AMDGPU_CS} with its chunks, {@code DRM_IOCTL_XE_EXEC} with its syncs): the
 * engine, the commands, the buffer objects the commands use with their access (implicit synchronisation through
 * each object's reservation), explicit in-fences, sync-object points to wait for and points to signal with the
 * job's finished fence. Built with {@link #on} and the {@code with} methods; each returns a new value.
 *
 * @param engine  index into {@link AccelDevice#engines()}
 * @param waits   sync objects to wait for; {@link SyncPoint#flags} may hold {@code SyncObj.WAIT_FOR_SUBMIT}
 * @param signals sync objects to signal; point 0 replaces a binary object's fence, above 0 adds a timeline point
 */
public record Submission(int engine, List<Command> commands, List<BoUse> objects, List<Fence> inFences,
                         List<SyncPoint> waits, List<SyncPoint> signals) {
    /** A buffer object the job reads or writes ({@code amdgpu_bo_list_entry}, {@code drm_exec} of the job's BOs). */
    public record BoUse(int handle, boolean write) {
    }

    /**
     * A sync-object handle with a timeline point (0: the binary fence) and flags ({@code struct
     * drm_amdgpu_cs_chunk_syncobj}, {@code struct drm_xe_sync}).
     */
    public record SyncPoint(int handle, long point, int flags) {
    }

    public Submission {
        ErrnoException.check(commands != null && objects != null && inFences != null && waits != null && signals != null,
                Errno.EINVAL, "submission to engine " + engine + " has a null list");
        ErrnoException.check(Stream.of(commands, objects, inFences, waits, signals).flatMap(List::stream)
                .noneMatch(Objects::isNull), Errno.EINVAL,
                "submission to engine " + engine + " has a null entry");
        commands = List.copyOf(commands);
        objects = List.copyOf(objects);
        inFences = List.copyOf(inFences);
        waits = List.copyOf(waits);
        signals = List.copyOf(signals);
    }

    /** A submission of {@code commands} to {@code engine}, using no object and waiting for nothing. */
    public static Submission on(int engine, Command... commands) {
        return new Submission(engine, List.of(commands), List.of(), List.of(), List.of(), List.of());
    }

    /** With {@code handle} read by the job: it waits for the object's writers. */
    public Submission reading(int handle) {
        return new Submission(engine, commands, plus(objects, new BoUse(handle, false)), inFences, waits, signals);
    }

    /** With {@code handle} written by the job: it waits for the object's readers and writers. */
    public Submission writing(int handle) {
        return new Submission(engine, commands, plus(objects, new BoUse(handle, true)), inFences, waits, signals);
    }

    /** With an explicit in-fence ({@code AMDGPU_CHUNK_ID_DEPENDENCIES}, a sync_file's fence). */
    public Submission after(Fence fence) {
        return new Submission(engine, commands, objects, plus(inFences, fence), waits, signals);
    }

    /** Waiting for {@code point} of sync object {@code handle} ({@code AMDGPU_CHUNK_ID_SYNCOBJ_TIMELINE_WAIT}). */
    public Submission waitingFor(int handle, long point, int flags) {
        return new Submission(engine, commands, objects, inFences, plus(waits, new SyncPoint(handle, point, flags)), signals);
    }

    /** Signalling {@code point} of sync object {@code handle} ({@code AMDGPU_CHUNK_ID_SYNCOBJ_TIMELINE_SIGNAL}). */
    public Submission signalling(int handle, long point) {
        return new Submission(engine, commands, objects, inFences, waits, plus(signals, new SyncPoint(handle, point, 0)));
    }

    private static <T> List<T> plus(List<T> list, T item) {
        ErrnoException.check(item != null, Errno.EINVAL, "a null entry added to a submission");
        List<T> out = new ArrayList<>(list);
        out.add(item);
        return out;
    }
}
