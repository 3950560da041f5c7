package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;

/**
 * perftest's out-of-band exchange over TCP ({@code perftest_communication.c}'s {@code ethernet_server_connect} and
 * {@code ethernet_client_connect}): the server listens on {@code -p} (default {@value Wire#DEFAULT_PORT}), the client
 * connects to it; lines of UTF-8 text.
 */
final class TcpOob implements Oob {
    /** How long a client tries to reach the server. */
    static final int CONNECT_MS = 10_000;

    private final Socket socket;
    private final BufferedReader in;
    private final OutputStream out;

    private TcpOob(Socket socket) throws IOException {
        this.socket = socket;
        socket.setTcpNoDelay(true);
        in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        out = socket.getOutputStream();
    }

    /**
     * Connects to the server at {@code host}:{@code port}.
     *
     * @throws ErrnoException {@code EIO} naming the server when it cannot be reached, {@code ETIMEDOUT} when it does
     *                        not answer within {@value #CONNECT_MS} ms
     */
    static TcpOob connect(String host, int port) {
        Socket s = new Socket();
        try {
            s.connect(new InetSocketAddress(host, port), CONNECT_MS);
            return new TcpOob(s);
        } catch (IOException e) {
            closeAfterFailure(s, e);
            throw new ErrnoException(e instanceof SocketTimeoutException ? Errno.ETIMEDOUT : Errno.EIO,
                    "perftest: couldn't connect to " + host + ":" + port + ": " + e.getMessage(), e);
        }
    }

    private static void closeAfterFailure(Socket s, IOException cause) {
        try {
            s.close();
        } catch (IOException x) {
            cause.addSuppressed(x);
        }
    }

    /** The server's listening socket on {@code port}, all addresses. */
    static final class Listener implements AutoCloseable {
        private final ServerSocket server;

        /**
         * @throws ErrnoException {@code EADDRINUSE} when the port is taken, {@code EINVAL} for a port out of range
         */
        Listener(int port) {
            if (port < 1 || port > 65535) {
                throw new ErrnoException(Errno.EINVAL, "perftest: invalid port -p " + port + ": 1..65535");
            }
            try {
                ServerSocket s = new ServerSocket();
                s.setReuseAddress(true);
                s.bind(new InetSocketAddress(port));
                server = s;
            } catch (IOException e) {
                throw new ErrnoException(Errno.EADDRINUSE, "perftest: couldn't listen on port " + port + ": "
                        + e.getMessage(), e);
            }
        }

        int port() {
            return server.getLocalPort();
        }

        /** Waits for the client. */
        TcpOob accept() {
            try {
                return new TcpOob(server.accept());
            } catch (IOException e) {
                throw new ErrnoException(Errno.EIO, "perftest: accepting the client on port " + port() + " failed: "
                        + e.getMessage(), e);
            }
        }

        @Override
        public void close() {
            try {
                server.close();
            } catch (IOException e) {
                throw new ErrnoException(Errno.EIO, "perftest: closing port " + port() + " failed: " + e.getMessage(), e);
            }
        }
    }

    @Override
    public void send(String line) {
        try {
            out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            throw new ErrnoException(Errno.ECONNRESET, "perftest: the other end " + socket.getRemoteSocketAddress()
                    + " went away: " + e.getMessage(), e);
        }
    }

    @Override
    public String receive() {
        try {
            return in.readLine();
        } catch (SocketException e) {
            return null; // reset by a peer that died: the end of the channel
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: reading from " + socket.getRemoteSocketAddress()
                    + " failed: " + e.getMessage(), e);
        }
    }

    @Override
    public InetAddress localAddress() {
        return socket.getLocalAddress();
    }

    @Override
    public void close() {
        try {
            socket.close();
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "perftest: closing the connection failed: " + e.getMessage(), e);
        }
    }
}
