package dev.dmaplane.accel.sync;

import java.util.List;

/** {@code struct sync_file_info} ({@code SYNC_IOC_FILE_INFO}): the file's name, status and fences. */
public record SyncFileInfo(String name, int status, List<SyncFenceInfo> fences) {
    public SyncFileInfo {
        fences = List.copyOf(fences);
    }
}
