package dev.dmaplane.accel.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Objects;

/** One engine of the device ({@code struct drm_gpu_scheduler} per ring, {@code drm-engine-<name>} in fdinfo). */
public record EngineInfo(String name, EngineClass engineClass) {
    /** What an engine runs ({@code enum drm_xe_engine_class}, amdgpu's ring types). */
    public enum EngineClass { COPY, COMPUTE }

    public EngineInfo {
        Objects.requireNonNull(engineClass, "engineClass");
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "engine name '" + name + "' is blank");
        }
    }
}
