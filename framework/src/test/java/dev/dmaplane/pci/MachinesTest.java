package dev.dmaplane.pci;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The test machine helpers produce files the loader accepts, so other tests fail only for the rule they probe. */
class MachinesTest {
    @Test
    void helpersProduceValidMachines() {
        String yaml = Machines.rootPortWith("[SV, RR, CR, UF]", Machines.switchWith(
                Machines.downstreamPort("02:00.0", "", Machines.endpoint("03:00.0"))
                        + "\n" + Machines.downstreamPort("02:01.0", "[SV, RR, CR, UF]", Machines.endpoint("04:00.0"))));
        try (PciTopology t = TopologyLoader.load(yaml, TopologyLoader.Format.YAML)) {
            assertEquals(6, t.functions().size(), yaml);
            assertTrue(t.function("02:01.0").acs().isPresent());
            assertTrue(t.function("02:00.0").acs().isEmpty());
        }
    }
}
