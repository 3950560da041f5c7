package dev.dmaplane.device;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * A device on the auxiliary bus ({@code struct auxiliary_device}): one function split into parts (rdma, net,
 * vdpa) that other drivers bind to by name. Named {@code <modname>.<devname>.<id>}.
 */
public final class AuxDevice extends Device {
    private final String matchName;
    private final int id;
    private final Object platformData;

    AuxDevice(Device parent, String modName, String devName, int id, Object platformData) {
        super(checkPart("module", modName) + "." + checkPart("device", devName) + "." + id, parent);
        if (id < 0) {
            throw new ErrnoException(Errno.EINVAL, "auxiliary device id must be >= 0, not " + id);
        }
        this.matchName = modName + "." + devName;
        this.id = id;
        this.platformData = platformData;
    }

    private static String checkPart(String what, String s) {
        if (s == null || s.isBlank() || s.indexOf('.') >= 0) {
            throw new ErrnoException(Errno.EINVAL, "auxiliary " + what + " name must be non-blank without '.', not '" + s + "'");
        }
        return s;
    }

    @Override
    public BusType bus() {
        return BusType.AUXILIARY;
    }

    /** {@code <modname>.<devname>}, what auxiliary ID tables name. */
    public String matchName() {
        return matchName;
    }

    public int id() {
        return id;
    }

    /** Data the parent driver hands to the child's driver (the containing struct in the kernel). */
    public <T> T platformData(Class<T> type) {
        if (!type.isInstance(platformData)) {
            throw new ErrnoException(Errno.EINVAL, name() + " carries " + (platformData == null ? "no data"
                    : platformData.getClass().getName()) + ", not " + type.getName());
        }
        return type.cast(platformData);
    }

    @Override
    public boolean matches(MatchEntry entry) {
        return entry instanceof MatchEntry.Auxiliary a && a.name().equals(matchName);
    }
}
