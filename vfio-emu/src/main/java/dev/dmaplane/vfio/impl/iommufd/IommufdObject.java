package dev.dmaplane.vfio.impl.iommufd;

/**
 * An object of an iommufd context ({@code struct iommufd_object} of {@code drivers/iommu/iommufd/main.c}): its ID in
 * the context's table, its type, and the references other objects hold on it ({@code obj->users} beyond the
 * table's), which make {@code IOMMU_DESTROY} answer {@code EBUSY}. Guarded by the context's lock.
 */
abstract class IommufdObject {
    /** {@code enum iommufd_object_type}, the types this model has. */
    enum Type {
        IOAS, HWPT_PAGING, DEVICE, ACCESS
    }

    final int id;
    final Type type;
    /**
     * References held by other objects (an HWPT on its IOAS, an attached device on its HWPT, vfio on a device, an
     * access on its IOAS, its driver on an access).
     */
    int users;

    IommufdObject(int id, Type type) {
        this.id = id;
        this.type = type;
    }

    @Override
    public String toString() {
        return type.name().toLowerCase() + " " + id;
    }
}
