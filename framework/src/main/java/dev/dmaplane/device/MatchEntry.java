package dev.dmaplane.device;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ProviderType;

/** One row of a driver's ID table: the devices the driver claims ({@code struct pci_device_id}, {@code auxiliary_device_id}). */
@ProviderType
public sealed interface MatchEntry permits MatchEntry.Pci, MatchEntry.Auxiliary {

    /** {@code PCI_ANY_ID}: this field matches any value. */
    int ANY_ID = -1;

    /** The value handed back to the driver's probe with the entry that matched ({@code driver_data}). */
    long driverData();

    /**
     * A PCI ID row; matching follows {@code pci_match_one_device}: each ID field equals the device's or is
     * {@link #ANY_ID}, and {@code (classCode ^ device class) & classMask == 0}.
     */
    record Pci(int vendor, int device, int subVendor, int subDevice, int classCode, int classMask, long driverData)
            implements MatchEntry {
        public Pci {
            checkId("vendor", vendor);
            checkId("device", device);
            checkId("subVendor", subVendor);
            checkId("subDevice", subDevice);
            if ((classCode & ~0xFFFFFF) != 0 || (classMask & ~0xFFFFFF) != 0) {
                throw new ErrnoException(Errno.EINVAL, "class code/mask must fit 24 bits: class=0x"
                        + Integer.toHexString(classCode) + " mask=0x" + Integer.toHexString(classMask));
            }
        }

        /** {@code PCI_DEVICE(vendor, device)}. */
        public static Pci of(int vendor, int device) {
            return new Pci(vendor, device, ANY_ID, ANY_ID, 0, 0, 0);
        }

        /** {@code PCI_DEVICE_CLASS(class, mask)}. */
        public static Pci ofClass(int classCode, int classMask) {
            return new Pci(ANY_ID, ANY_ID, ANY_ID, ANY_ID, classCode, classMask, 0);
        }

        /** The same row with {@code driverData}. */
        public Pci withDriverData(long data) {
            return new Pci(vendor, device, subVendor, subDevice, classCode, classMask, data);
        }

        /** Whether a function with these IDs matches this row. */
        public boolean matches(int vendorId, int deviceId, int subVendorId, int subDeviceId, int classCodeOfDevice) {
            return (vendor == ANY_ID || vendor == vendorId)
                    && (device == ANY_ID || device == deviceId)
                    && (subVendor == ANY_ID || subVendor == subVendorId)
                    && (subDevice == ANY_ID || subDevice == subDeviceId)
                    && ((classCode ^ classCodeOfDevice) & classMask) == 0;
        }

        private static void checkId(String what, int v) {
            if (v != ANY_ID && (v & ~0xFFFF) != 0) {
                throw new ErrnoException(Errno.EINVAL, what + " ID must be 16 bits or ANY_ID, not 0x" + Integer.toHexString(v));
            }
        }
    }

    /** An auxiliary-bus row: matches a device named {@code <name>.<id>} ({@code auxiliary_match_id}). */
    record Auxiliary(String name, long driverData) implements MatchEntry {
        public Auxiliary {
            if (name == null || name.isBlank() || name.indexOf('.') < 1) {
                throw new ErrnoException(Errno.EINVAL, "auxiliary match name must be '<module>.<device>', not '" + name + "'");
            }
        }

        public static Auxiliary of(String name) {
            return new Auxiliary(name, 0);
        }
    }
}
