package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.fs.PageCopy;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * The storage behind a controller's namespaces (the block backend of QEMU's {@code nvme-ns}): a memfd per
 * namespace on the device's own memory, or one host file holding the namespaces back to back. Offsets are bytes
 * inside namespace {@code nsid}; the controller checks them against the namespace size first.
 */
interface Media extends AutoCloseable {
    /**
     * Hands {@code length} bytes at {@code offset} to {@code to} piece by piece: straight from the namespace's own
     * pages where the media has them.
     *
     * @return bytes handed over: all of them, or fewer when {@code to} stopped
     */
    long read(int nsid, long offset, long length, PageCopy to);

    /**
     * Has {@code from} fill {@code length} bytes at {@code offset} piece by piece: straight into the namespace's
     * own pages where the media has them.
     *
     * @return bytes stored: all of them, or fewer when {@code from} stopped or the media ran out of room
     */
    long write(int nsid, long offset, long length, PageCopy from);

    /** Zeroes {@code length} bytes at {@code offset}, releasing the storage where it can (deallocate). */
    void zero(int nsid, long offset, long length);

    /** Makes every completed write durable (Flush). */
    void flush();

    @Override
    void close();

    /**
     * The media {@code cfg} describes: memfds, or the host file created or grown to hold every namespace.
     *
     * @throws ErrnoException {@code EINVAL} naming the file if it cannot be opened or sized
     */
    static Media open(String where, NvmeConfig cfg) {
        if (cfg.namespaceFile().isPresent()) {
            return FileMedia.open(where, cfg.namespaceFile().get(), cfg.namespaces(), cfg.namespaceSize());
        }
        return new MemfdMedia(where, cfg.namespaces(), cfg.namespaceSize());
    }

    /** Each namespace a memfd ({@link MemFs} inode) on memory of the device's own: its pages come on first write. */
    final class MemfdMedia implements Media {
        private final HostMemory memory;
        private final MemFs fs;
        private final List<Inode> files = new ArrayList<>();

        MemfdMedia(String where, int namespaces, long size) {
            long total = namespaces * size;
            long huge = HostMemory.HUGE_PAGE_SIZE;
            this.memory = new HostMemory(Math.min(HostMemory.MAX_RAM / huge * huge, (total + 2 * huge - 1) / huge * huge));
            this.fs = new MemFs(memory, new Tracer(), where + " media", false);
            for (int ns = 1; ns <= namespaces; ns++) {
                Inode f = fs.create("/nvme-ns" + ns);
                f.truncate(size);
                files.add(f);
            }
        }

        @Override
        public long read(int nsid, long offset, long length, PageCopy to) {
            return files.get(nsid - 1).read(offset, length, to);
        }

        @Override
        public long write(int nsid, long offset, long length, PageCopy from) {
            return files.get(nsid - 1).write(offset, length, from);
        }

        @Override
        public void zero(int nsid, long offset, long length) {
            files.get(nsid - 1).punchHole(offset, length);
        }

        @Override
        public void flush() {
            // memfds have no backing store: completed writes are already all there is
        }

        @Override
        public void close() {
            fs.close();
            memory.close();
        }
    }

    /** The namespaces back to back in one host file (QEMU's {@code drive file=}). */
    final class FileMedia implements Media {
        private final FileChannel channel;
        private final long size;

        private FileMedia(FileChannel channel, long size) {
            this.channel = channel;
            this.size = size;
        }

        static FileMedia open(String where, Path file, int namespaces, long size) {
            try {
                FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
                        StandardOpenOption.WRITE);
                try {
                    if (ch.size() < namespaces * size) {
                        ch.write(ByteBuffer.allocate(1), namespaces * size - 1);
                    }
                } catch (IOException e) {
                    ch.close();
                    throw e;
                }
                return new FileMedia(ch, size);
            } catch (IOException e) {
                throw new ErrnoException(Errno.EINVAL, where + ": namespaceFile " + file + " cannot hold " + namespaces
                        + " namespaces of " + size + " bytes: " + e.getMessage(), e);
            }
        }

        /** Through a page-sized bounce buffer per call: a host file's bytes are not memory the bus reaches. */
        @Override
        public long read(int nsid, long offset, long length, PageCopy to) {
            MemorySegment buf = MemorySegment.ofArray(new byte[(int) Math.min(length, HostMemory.PAGE_SIZE)]);
            for (long done = 0; done < length; ) {
                MemorySegment piece = buf.asSlice(0, Math.min(buf.byteSize(), length - done));
                read(nsid, offset + done, piece);
                if (!to.copy(piece, done)) {
                    return done;
                }
                done += piece.byteSize();
            }
            return length;
        }

        @Override
        public long write(int nsid, long offset, long length, PageCopy from) {
            MemorySegment buf = MemorySegment.ofArray(new byte[(int) Math.min(length, HostMemory.PAGE_SIZE)]);
            for (long done = 0; done < length; ) {
                MemorySegment piece = buf.asSlice(0, Math.min(buf.byteSize(), length - done));
                if (!from.copy(piece, done)) {
                    return done;
                }
                write(nsid, offset + done, piece);
                done += piece.byteSize();
            }
            return length;
        }

        private void read(int nsid, long offset, MemorySegment dst) {
            ByteBuffer b = dst.asByteBuffer();
            long at = (nsid - 1) * size + offset;
            try {
                while (b.hasRemaining()) {
                    int n = channel.read(b, at + b.position());
                    if (n < 0) {
                        b.put(new byte[b.remaining()]); // past the end of a sparse file: zeroes
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        private void write(int nsid, long offset, MemorySegment src) {
            ByteBuffer b = src.asByteBuffer();
            long at = (nsid - 1) * size + offset;
            try {
                while (b.hasRemaining()) {
                    channel.write(b, at + b.position());
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public void zero(int nsid, long offset, long length) {
            MemorySegment zeroes = MemorySegment.ofArray(new byte[(int) Math.min(length, 1 << 20)]);
            for (long done = 0; done < length; done += zeroes.byteSize()) {
                write(nsid, offset + done, zeroes.asSlice(0, Math.min(zeroes.byteSize(), length - done)));
            }
        }

        @Override
        public void flush() {
            try {
                channel.force(false);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public void close() {
            try {
                channel.close();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
