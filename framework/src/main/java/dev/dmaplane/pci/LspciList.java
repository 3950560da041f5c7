package dev.dmaplane.pci;

import java.util.Comparator;
import java.util.List;
import java.util.function.Function;

/**
 * {@code lspci} with its options ({@code show_device} in {@code lspci.c}): per function the terse line
 * ({@code show_terse}: slot, class, vendor and device in the names, numbers or both of {@code -n}/{@code -nn}, the
 * revision), with {@code -k} the subsystem and {@code show_kernel}'s driver and module lines, or with {@code -v}
 * the verbose block; then with {@code -x} the hex dump, and an empty line after each function if either was given.
 * IDs the model's vendor has no {@code pci.ids} entry for print as lspci prints unknown ones ({@code Device 1da0:0001}).
 */
final class LspciList {
    private LspciList() {
    }

    static String render(PciTopology topology, List<PciFunction> functions, LspciOptions o,
                         Function<PciFunction, List<String>> kernelModules) {
        // an empty slot answers no config read, so lspci's scan never sees it; asked for by name, -v says why
        boolean named = o.exact().isPresent() && o.verbose() > 0;
        List<PciFunction> shown = functions.stream().filter(f -> f.absence().isEmpty() || named)
                .filter(f -> o.filter().matches(f)).sorted(Comparator.comparing(PciFunction::bdf)).toList();
        boolean domains = o.domains() || functions.stream().anyMatch(f -> f.bdf().domain() != 0);
        StringBuilder sb = new StringBuilder();
        for (PciFunction fn : shown) {
            if (o.verbose() > 0) {
                sb.append(topology.lspciVerbose(fn).stripTrailing()).append('\n');
            } else {
                terse(sb, fn, o.numeric(), domains);
                if (o.kernel()) {
                    kernel(sb, fn, o.numeric(), kernelModules.apply(fn));
                }
            }
            if (o.hexBytes() > 0) {
                LspciHex.bytes(sb, fn, o.hexBytes());
            }
            if (o.verbose() > 0 || o.hexBytes() > 0) {
                sb.append('\n');
            }
        }
        return sb.toString();
    }

    /** {@code show_terse}: {@code [DDDD:]BB:DD.F CLASS: VENDOR DEVICE (rev RR)}. */
    private static void terse(StringBuilder sb, PciFunction fn, int numeric, boolean domains) {
        Bdf b = fn.bdf();
        if (domains) {
            sb.append(String.format("%04x:", b.domain()));
        }
        sb.append(String.format("%02x:%02x.%d ", b.bus(), b.device(), b.function()));
        int cls = fn.classCode() >>> 8;
        sb.append(switch (numeric) {
            case 0 -> Lspci.className(fn.classCode());
            case 1 -> String.format("%04x", cls);
            default -> String.format("%s [%04x]", Lspci.className(fn.classCode()), cls);
        });
        sb.append(": ").append(ids(numeric, fn.vendorId(), fn.deviceId()));
        if (fn.revision() != 0) {
            sb.append(String.format(" (rev %02x)", fn.revision()));
        }
        sb.append('\n');
    }

    /** {@code pci_lookup_name} of an ID pair {@code pci.ids} does not know. */
    private static String ids(int numeric, int vendor, int device) {
        return switch (numeric) {
            case 0 -> String.format("Device %04x:%04x", vendor, device);
            case 1 -> String.format("%04x:%04x", vendor, device);
            default -> String.format("Device [%04x:%04x]", vendor, device);
        };
    }

    /** {@code -k}: the subsystem ({@code show_terse}), the bound driver and the modules ({@code ls-kernel.c}). */
    private static void kernel(StringBuilder sb, PciFunction fn, int numeric, List<String> modules) {
        int sv = fn.subsystemVendorId();
        if (!fn.isBridge() && sv != 0 && sv != 0xffff) {
            sb.append("\tSubsystem: ").append(ids(numeric, sv, fn.subsystemId())).append('\n');
        }
        fn.driver().ifPresent(d -> sb.append("\tKernel driver in use: ").append(d.name()).append('\n'));
        if (!modules.isEmpty()) {
            sb.append("\tKernel modules: ").append(String.join(", ", modules)).append('\n');
        }
    }
}
