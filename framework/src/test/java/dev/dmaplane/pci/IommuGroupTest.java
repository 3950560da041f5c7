package dev.dmaplane.pci;

import dev.dmaplane.pci.TopologyLoader.Format;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.dmaplane.pci.Machines.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * IOMMU group formation. The walk up the hierarchy and the multi-function rule follow {@code pci_device_group} and
 * {@code get_pci_function_alias_group} in {@code drivers/iommu/iommu.c}; what counts as isolating follows
 * {@code pci_acs_enabled}, {@code pci_acs_flags_enabled} and {@code pci_acs_path_enabled} in {@code drivers/pci/pci.c}
 * (REQ_ACS_FLAGS = SV|RR|CR|UF; a flag the ACS capability does not implement counts as hard-wired on, except EC).
 * Downstream ports of one switch that lack ACS share a group: the switch routes P2P between them directly (PCIe
 * Base Spec, ACS P2P Request Redirect).
 */
class IommuGroupTest {
    private static final String REQ = "[SV, RR, CR, UF]";

    private static List<List<String>> groups(String yaml) {
        try (PciTopology t = TopologyLoader.load(yaml, Format.YAML)) {
            return t.isolationGroups().stream().map(g -> g.stream().map(f -> f.bdf().toString().substring(5)).toList()).toList();
        }
    }

    private static String twoPortSwitch(String rootAcs, String dsp0Acs, String dsp1Acs) {
        return rootPortWith(rootAcs, switchWith(downstreamPort("02:00.0", dsp0Acs, endpoint("03:00.0"))
                + "\n" + downstreamPort("02:01.0", dsp1Acs, endpoint("04:00.0"))));
    }

    @Test
    void switchWithAcsIsolatesEachEndpoint() {
        assertEquals(List.of(List.of("00:01.0"), List.of("01:00.0"), List.of("02:00.0"), List.of("02:01.0"),
                List.of("03:00.0"), List.of("04:00.0")), groups(twoPortSwitch(REQ, REQ, REQ)));
    }

    @Test
    void switchWithoutAcsGroupsItsDownstreamPortsAndEndpoints() {
        assertEquals(List.of(List.of("00:01.0"), List.of("01:00.0"), List.of("02:00.0", "02:01.0", "03:00.0", "04:00.0")),
                groups(twoPortSwitch(REQ, "", "")));
    }

    @Test
    void onlyTheDownstreamPortsLackingAcsJoinEachOther() {
        assertEquals(List.of(List.of("00:01.0"), List.of("01:00.0"), List.of("02:00.0", "03:00.0"), List.of("02:01.0"),
                List.of("04:00.0")), groups(twoPortSwitch(REQ, "", REQ)));
    }

    @Test
    void rootPortWithoutAcsTakesEverythingBelowIntoItsGroup() {
        assertEquals(List.of(List.of("00:01.0", "01:00.0", "02:00.0", "02:01.0", "03:00.0", "04:00.0")),
                groups(twoPortSwitch("", REQ, REQ)));
    }

    @Test
    void multifunctionEndpointWithoutAcsSharesOneGroup() {
        String mf = rootPortWith(REQ, endpoint("01:00.0", "multifunction: true") + "\n" + endpoint("01:00.1"));
        assertEquals(List.of(List.of("00:01.0"), List.of("01:00.0", "01:00.1")), groups(mf));
    }

    @Test
    void multifunctionEndpointWithAcsOnEveryFunctionIsSplit() {
        String mf = rootPortWith(REQ, endpoint("01:00.0", "multifunction: true\nacs: " + REQ)
                + "\n" + endpoint("01:00.1", "acs: " + REQ));
        assertEquals(List.of(List.of("00:01.0"), List.of("01:00.0"), List.of("01:00.1")), groups(mf));
    }

    @Test
    void multifunctionFunctionWithAcsStaysApartFromThoseWithout() {
        String mf = rootPortWith(REQ, endpoint("01:00.0", "multifunction: true") + "\n" + endpoint("01:00.1", "acs: " + REQ)
                + "\n" + endpoint("01:00.2"));
        assertEquals(List.of(List.of("00:01.0"), List.of("01:00.0", "01:00.2"), List.of("01:00.1")), groups(mf));
    }

    @Test
    void unimplementedAcsBitsCountAsHardwiredOn() {
        String noRrCap = "{capability: [SV, CR, UF], control: [SV, CR, UF]}";
        assertEquals(List.of("03:00.0"), groups(twoPortSwitch(REQ, noRrCap, REQ)).get(4),
                "RR is not implemented, so the port cannot redirect and counts as enforcing it");
        String rrOff = "{capability: [SV, RR, CR, UF], control: [SV, CR, UF]}";
        assertEquals(List.of("02:00.0", "03:00.0"), groups(twoPortSwitch(REQ, rrOff, REQ)).get(2),
                "RR implemented but disabled: not isolating");
    }

    @Test
    void acsEnabledByPortType() {
        String yaml = rootPortWith("{capability: [SV, RR, CR, UF], control: [SV, RR, CR, UF]}",
                endpoint("01:00.0", "multifunction: true") + "\n" + endpoint("01:00.1"));
        try (PciTopology t = TopologyLoader.load(yaml, Format.YAML)) {
            PciFunction rp = t.function("00:01.0");
            assertTrue(rp.acsEnabled(Acs.REQUIRED));
            assertFalse(rp.acsEnabled(Acs.of(Acs.EC)), "Egress Control is never assumed hard-wired");
            assertTrue(rp.acsEnabled(Acs.of(Acs.TB)), "TB is not implemented here, so it counts as on");
            assertFalse(t.function("01:00.0").acsEnabled(Acs.REQUIRED), "multi-function without ACS");
        }
        try (PciTopology t = TopologyLoader.load(rootPortWith("", endpoint("01:00.0")), Format.YAML)) {
            assertTrue(t.function("01:00.0").acsEnabled(Acs.REQUIRED), "single-function endpoints need no ACS");
            assertFalse(t.function("00:01.0").acsEnabled(Acs.REQUIRED), "a root port without the capability");
        }
    }

    @Test
    void groupsAreFixedWhenTheTopologyIsBuilt() {
        try (PciTopology t = TopologyLoader.load(twoPortSwitch(REQ, REQ, REQ), Format.YAML)) {
            PciFunction dsp = t.function("02:00.0");
            int before = t.isolationGroups().size();
            dsp.configSpace().write(0x100 + PciRegs.ACS_CTRL, 2, 0);
            assertFalse(dsp.acsEnabled(Acs.REQUIRED));
            assertEquals(before, t.isolationGroups().size(), "like iommu_groups, formed once at discovery");
        }
        assertEquals(groups(twoPortSwitch(REQ, "", "")), groups(twoPortSwitch(REQ, "", "")), "deterministic");
    }
}
