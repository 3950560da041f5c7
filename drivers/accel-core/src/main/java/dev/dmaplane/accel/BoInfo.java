package dev.dmaplane.accel;

/**
 * A buffer object as a placement query reports it (amdgpu's {@code GEM_OP_GET_GEM_CREATE_INFO} with its current
 * domain): {@code placement} is where it is now ({@link Placement#VISIBLE_VRAM} when in VRAM inside the window).
 */
public record BoInfo(int handle, long size, Placement placement, long residentBytes, boolean pinned, int vmMappings) {
}
