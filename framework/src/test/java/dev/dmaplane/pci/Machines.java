package dev.dmaplane.pci;

/** Small machine files for tests: one root port with what the caller puts below it. */
final class Machines {
    private Machines() {
    }

    /** A root port at 00:01.0 with ACS {@code acs} (YAML flow list or empty for none) and {@code below} as its children. */
    static String rootPortWith(String acs, String below) {
        return """
                memory: 1GiB
                pci:
                  hostBridges:
                    - children:
                        - bdf: "00:01.0"
                          type: rootPort
                          vendor: "0x1da0"
                          device: "0x1000"
                          class: "0x060400"
                %s
                          children:
                %s
                """.formatted(acs.isEmpty() ? "" : "          acs: " + acs, below.indent(12).stripTrailing());
    }

    /** A YAML endpoint entry at {@code bdf} with one 1 MiB BAR. */
    static String endpoint(String bdf) {
        return endpoint(bdf, "");
    }

    /** A YAML endpoint entry at {@code bdf} with one 1 MiB BAR and extra lines. */
    static String endpoint(String bdf, String extra) {
        return """
                - bdf: "%s"
                  vendor: "0x1da0"
                  device: "0x0002"
                  class: "0x020000"
                  bars:
                    - { index: 0, size: 1MiB }
                %s""".formatted(bdf, extra.isEmpty() ? "" : extra.indent(2).stripTrailing());
    }

    /** A switch: upstream port 01:00.0 with downstream ports {@code dsps} (YAML list entries). */
    static String switchWith(String dsps) {
        return """
                - bdf: "01:00.0"
                  type: upstreamPort
                  vendor: "0x1da0"
                  device: "0x1001"
                  class: "0x060400"
                  children:
                %s""".formatted(dsps.indent(4).stripTrailing());
    }

    /** A downstream port at {@code bdf} with ACS {@code acs} (empty for no capability) over {@code below}. */
    static String downstreamPort(String bdf, String acs, String below) {
        return """
                - bdf: "%s"
                  type: downstreamPort
                  vendor: "0x1da0"
                  device: "0x1002"
                  class: "0x060400"
                %s  children:
                %s""".formatted(bdf, acs.isEmpty() ? "" : "  acs: " + acs + "\n", below.indent(4).stripTrailing());
    }
}
