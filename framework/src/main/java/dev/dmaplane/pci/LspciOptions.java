package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * The options of pciutils' {@code lspci} ({@code lspci.c}'s {@code getopt} string) the model renders: {@code -n}
 * ({@code -nn}: names and numbers), {@code -D} (domains), {@code -k} (kernel driver and modules), {@code -t} (the
 * tree), {@code -v} ({@code -vv}, {@code -vvv}), {@code -x} ({@code -xxx}: 256 bytes, {@code -xxxx}: 4096),
 * {@code -s [[[[DOMAIN]:]BUS]:][SLOT][.[FUNC]]} and {@code -d [VENDOR]:[DEVICE][:CLASS[:PROG-IF]]} with
 * {@code lib/filter.c}'s syntax, bundled as getopt takes them ({@code -nnk}, {@code -s04:00.0}); and dmaplane's
 * {@code -j} (JSON). A bare BDF word is {@code -s} of exactly that function, as the older {@code dmaplane:lspci -v BDF}.
 *
 * @param numeric  0 names, 1 numbers ({@code -n}), 2 both ({@code -nn})
 * @param domains  {@code -D}
 * @param kernel   {@code -k}
 * @param tree     {@code -t}
 * @param verbose  the count of {@code -v}
 * @param hexBytes 0, or the bytes of config space {@code -x} dumps (64, 256, 4096)
 * @param json     {@code -j}
 * @param filter   {@code -s} and {@code -d}
 * @param exact    the bare BDF word, if given: that function must exist
 */
public record LspciOptions(int numeric, boolean domains, boolean kernel, boolean tree, int verbose, int hexBytes,
                           boolean json, Filter filter, Optional<Bdf> exact) {
    public LspciOptions {
        ErrnoException.requireNonNull(filter, "lspci filter");
        ErrnoException.requireNonNull(exact, "lspci function");
    }

    /**
     * {@code struct pci_filter}: -1 for any field not given; a class matches under its mask.
     *
     * @param domain    PCI domain
     * @param bus       bus number
     * @param slot      device number
     * @param func      function number
     * @param vendor    vendor ID
     * @param device    device ID
     * @param cls       class and subclass ({@code device_class})
     * @param classMask the bits of {@code cls} that must match
     * @param progIf    programming interface
     */
    public record Filter(int domain, int bus, int slot, int func, int vendor, int device, int cls, int classMask,
                         int progIf) {
        /** Every function. */
        public static final Filter ANY = new Filter(-1, -1, -1, -1, -1, -1, -1, ~0, -1);

        /** {@code pci_filter_match}. */
        public boolean matches(PciFunction fn) {
            Bdf b = fn.bdf();
            return (domain < 0 || domain == b.domain()) && (bus < 0 || bus == b.bus())
                    && (slot < 0 || slot == b.device()) && (func < 0 || func == b.function())
                    && (vendor < 0 || vendor == fn.vendorId()) && (device < 0 || device == fn.deviceId())
                    && (cls < 0 || ((cls ^ (fn.classCode() >>> 8)) & classMask) == 0)
                    && (progIf < 0 || progIf == (fn.classCode() & 0xff));
        }
    }

    /**
     * Parses {@code args}; errors are {@code EINVAL} with pciutils' words, after {@code command}.
     *
     * @throws ErrnoException {@code EINVAL} for an unknown option, a missing argument or a bad filter
     */
    public static LspciOptions parse(String command, List<String> args) {
        ErrnoException.requireNonNull(command, "lspci command name");
        ErrnoException.requireNonNull(args, "lspci arguments");
        int n = 0;
        int v = 0;
        int x = 0;
        boolean d = false;
        boolean k = false;
        boolean t = false;
        boolean j = false;
        Filter f = Filter.ANY;
        Bdf exact = null;
        String exactWord = null;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a == null || a.isEmpty() || a.equals("-")) {
                throw bad(command, "bad option '" + (a == null ? "null" : a) + "'");
            }
            if (a.charAt(0) != '-') {
                if (exact != null) {
                    throw bad(command, "bad option '" + a + "' after '" + exactWord + "'");
                }
                exact = parseBdf(command, a);
                exactWord = a;
                continue;
            }
            for (int c = 1; c < a.length(); c++) {
                char o = a.charAt(c);
                switch (o) {
                    case 'n' -> n++;
                    case 'v' -> v++;
                    case 'x' -> x++;
                    case 'D' -> d = true;
                    case 'k' -> k = true;
                    case 't' -> t = true;
                    case 'j' -> j = true;
                    case 's', 'd' -> {
                        String value;
                        if (c + 1 < a.length()) {
                            value = a.substring(c + 1);
                        } else if (i + 1 < args.size() && args.get(i + 1) != null) {
                            value = args.get(++i);
                        } else {
                            throw bad(command, "option requires an argument -- '" + o + "'");
                        }
                        f = o == 's' ? slot(command, f, value) : id(command, f, value);
                        c = a.length();
                    }
                    default -> throw bad(command, "bad option '" + a + "' (invalid option -- '" + o + "')");
                }
            }
        }
        if (t && exact != null) {
            throw bad(command, "bad option '-t' before '" + exactWord + "'");
        }
        int hex = x == 0 ? 0 : x >= 4 ? ConfigSpace.SIZE : x == 3 ? PciRegs.CFG_SPACE_SIZE : 64;
        return new LspciOptions(Math.min(n, 2), d, k, t, v, hex, j, f, Optional.ofNullable(exact));
    }

    private static Bdf parseBdf(String command, String word) {
        try {
            return Bdf.parse(word);
        } catch (ErrnoException e) {
            throw new ErrnoException(Errno.EINVAL, command + ": bad option '" + word + "' (" + e.getMessage() + ")", e);
        }
    }

    /** {@code pci_filter_parse_slot}: {@code [[[[DOMAIN]:]BUS]:][SLOT][.[FUNC]]}. */
    private static Filter slot(String command, Filter f, String s) {
        String[] fields = fields(command, "-s", s, ':', 3);
        int i = 0;
        int domain = f.domain();
        int bus = f.bus();
        int slot = f.slot();
        int func = f.func();
        if (fields[2] != null) {
            domain = hex(command, "-s", fields[0], domain, 0x7fffffff, "Invalid domain number");
            i++;
        }
        if (fields[i + 1] != null) {
            bus = hex(command, "-s", fields[i], bus, 0xff, "Invalid bus number");
            i++;
        }
        String dev = fields[i];
        if (defined(dev)) {
            int dot = dev.indexOf('.');
            if (dot >= 0 && dev.indexOf('.', dot + 1) >= 0) {
                throw bad(command, "-s: Invalid slot/function number");
            }
            slot = hex(command, "-s", dot < 0 ? dev : dev.substring(0, dot), slot, 0x1f, "Invalid slot number");
            func = dot < 0 ? func : hex(command, "-s", dev.substring(dot + 1), func, 7, "Invalid function number");
        }
        return new Filter(domain, bus, slot, func, f.vendor(), f.device(), f.cls(), f.classMask(), f.progIf());
    }

    /** {@code pci_filter_parse_id}: {@code [VENDOR]:[DEVICE][:CLASS[:PROG-IF]]}, x in a class a wildcard nibble. */
    private static Filter id(String command, Filter f, String s) {
        String[] fields = fields(command, "-d", s, ':', 4);
        if (fields[1] == null) {
            throw bad(command, "-d: At least two fields must be given");
        }
        int vendor = hex(command, "-d", fields[0], f.vendor(), 0xffff, "Invalid vendor ID");
        int device = hex(command, "-d", fields[1], f.device(), 0xffff, "Invalid device ID");
        int cls = f.cls();
        int mask = f.classMask();
        if (defined(fields[2])) {
            if (fields[2].length() > 4) {
                throw bad(command, "-d: Invalid class code");
            }
            cls = 0;
            mask = ~0;
            for (char c : fields[2].toCharArray()) {
                int digit = Character.digit(c, 16);
                if (c == 'x' || c == 'X') {
                    cls <<= 4;
                    mask <<= 4;
                } else if (digit < 0) {
                    throw bad(command, "-d: Invalid class code");
                } else {
                    cls = cls << 4 | digit;
                    mask = mask << 4 | 0xf;
                }
            }
        }
        int progIf = hex(command, "-d", fields[3], f.progIf(), 0xff, "Invalid programming interface code");
        return new Filter(f.domain(), f.bus(), f.slot(), f.func(), vendor, device, cls, mask, progIf);
    }

    /** {@code split_to_fields}: at most {@code max} fields; nulls for those not given. */
    private static String[] fields(String command, String option, String s, char sep, int max) {
        if (s.length() >= 64) {
            throw bad(command, option + ": Expression too long");
        }
        String[] parts = s.split(Pattern.quote(String.valueOf(sep)), -1);
        if (parts.length > max) {
            throw bad(command, option + ": Too many fields");
        }
        String[] out = new String[max];
        System.arraycopy(parts, 0, out, 0, parts.length);
        return out;
    }

    private static boolean defined(String field) {
        return field != null && !field.isEmpty() && !field.equals("*");
    }

    /** {@code parse_hex_field}: hex digits up to {@code max}; an undefined field keeps {@code keep}. */
    private static int hex(String command, String option, String field, int keep, int max, String error) {
        if (!defined(field)) {
            return keep;
        }
        long value = 0;
        for (char c : field.toCharArray()) {
            int digit = Character.digit(c, 16);
            if (digit < 0 || c > 'f') {
                throw bad(command, option + ": " + error);
            }
            value = value << 4 | digit;
            if (value > max) {
                throw bad(command, option + ": " + error);
            }
        }
        return (int) value;
    }

    private static ErrnoException bad(String command, String what) {
        return new ErrnoException(Errno.EINVAL, command + ": " + what + "; usage: " + command
                + " [-n[n]] [-D] [-k] [-t] [-v[v[v]]] [-x[xx[x]]] [-s [[[[DOMAIN]:]BUS]:][SLOT][.[FUNC]]] "
                + "[-d [VENDOR]:[DEVICE][:CLASS[:PROG-IF]]] [-j] [BDF]");
    }
}
