package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

/** An address handle ({@code ibv_create_ah}): the destination of UD sends. */
@ProviderType
public interface AddressHandle extends VerbsObject {
    ProtectionDomain pd();

    AhAttr attr();
}
