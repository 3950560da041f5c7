package dev.dmaplane.p2pdma;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/** Variants of the embedded default machine file, made by replacing exact lines, and machines booted from them. */
public final class MachineFiles implements AutoCloseable {
    private static final String DSP_KEYS = "                  device: \"0x1002\"\n                  class: \"0x060400\"\n";

    private final List<Machine> booted = new ArrayList<>();
    private String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE);

    /** {@code old} must occur exactly {@code times} times. */
    private MachineFiles replace(String old, String with, int times) {
        int n = text.split(Pattern.quote(old), -1).length - 1;
        if (n != times) {
            throw new IllegalStateException("expected " + times + " occurrence(s) of <" + old + "> in the default machine, found " + n);
        }
        text = text.replace(old, with);
        return this;
    }

    /** The host bridge is on the P2PDMA whitelist. */
    public MachineFiles hostBridgeAllowsP2p() {
        return replace("      p2pAllowed: false\n", "      p2pAllowed: true\n", 1);
    }

    /** Both switch downstream ports enable ACS Control {@code acs}, e.g. {@code [SV, RR, CR, UF]} as pci_std_enable_acs does. */
    MachineFiles downstreamPortsAcs(String acs) {
        return replace(DSP_KEYS, DSP_KEYS + "                  acs: " + acs + "\n", 2);
    }

    /** The NVMe 06:00.0 has a 16 MiB controller memory buffer as memory BAR2, the classic p2pdma provider. */
    MachineFiles nvmeCmb() {
        return replace("                - { index: 0, size: 16KiB, kind: mmio }\n",
                "                - { index: 0, size: 16KiB, kind: mmio }\n                - { index: 2, size: 16MiB, kind: memory }\n", 1);
    }

    /** The HCA 04:00.0 under the switch has 16 MiB of device memory as BAR2. */
    MachineFiles switchHcaMemory() {
        return replace("                        - { index: 0, size: 1MiB, kind: mmio }\n",
                "                        - { index: 0, size: 1MiB, kind: mmio }\n                        - { index: 2, size: 16MiB, kind: memory }\n", 1);
    }

    public String text() {
        return text;
    }

    /** Boots the machine this file describes with {@code options}; closed with this object. */
    public Machine boot(Machine.Options options) {
        Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), options);
        booted.add(m);
        return m;
    }

    /** Boots the machine this file describes; closed with this object. */
    public Machine boot() {
        return boot(Machine.Options.DEFAULT);
    }

    @Override
    public void close() {
        booted.forEach(Machine::close);
    }
}
