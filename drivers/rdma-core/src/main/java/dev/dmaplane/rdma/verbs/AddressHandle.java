package dev.dmaplane.rdma.verbs;

/** An address handle ({@code ibv_create_ah}): the destination of UD sends. */
public interface AddressHandle extends VerbsObject {
    ProtectionDomain pd();

    AhAttr attr();
}
