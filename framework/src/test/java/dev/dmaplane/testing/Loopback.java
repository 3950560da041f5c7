package dev.dmaplane.testing;

import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * Loopback addresses for wire tests: {@code 127.X.Y.<host>}, where the /24 {@code 127.X.Y} is this test JVM's own
 * (from its process ID), so test runs of several engineers on one machine never bind the same RoCEv2 port 4791 or
 * CM address. All of 127.0.0.0/8 reaches the loopback interface (RFC 1122 3.2.1.3). A child process of a test gets
 * the same /24 through {@link #childProperty()}.
 */
public final class Loopback {
    /** The system property that fixes the /24, as {@code X.Y}. */
    public static final String PROPERTY = "dmaplane.test.loopbackNet";
    private static final int[] NET = net();

    private Loopback() {
    }

    /** {@code 127.X.Y.host} of this JVM's /24. */
    public static InetAddress address(int host) {
        if (host < 1 || host > 254) {
            throw new IllegalArgumentException("loopback host byte " + host + " is not in 1..254");
        }
        try {
            return InetAddress.getByAddress(new byte[]{127, (byte) NET[0], (byte) NET[1], (byte) host});
        } catch (UnknownHostException e) {
            throw new IllegalStateException("a four-byte address is always valid", e);
        }
    }

    /** {@link #address(int)} as dotted text. */
    public static String ip(int host) {
        return address(host).getHostAddress();
    }

    /** The JVM argument that gives a child process this JVM's /24. */
    public static String childProperty() {
        return "-D" + PROPERTY + "=" + NET[0] + "." + NET[1];
    }

    private static int[] net() {
        String given = System.getProperty(PROPERTY);
        if (given != null) {
            String[] parts = given.split("\\.");
            if (parts.length != 2) {
                throw new IllegalArgumentException(PROPERTY + "=" + given + " is not X.Y");
            }
            return new int[]{Integer.parseInt(parts[0]), Integer.parseInt(parts[1])};
        }
        // 127.0.0.0/24 stays for the defaults of ./dmaplane; X is 1..254, Y 0..253.
        long pid = ProcessHandle.current().pid();
        return new int[]{1 + (int) ((pid / 254) % 254), (int) (pid % 254)};
    }
}
