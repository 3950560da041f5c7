package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DmaTestDriverTest {
    /** A PCI function with fixed IDs. */
    static final class Fn extends Device {
        final int classCode;

        Fn(String bdf, int classCode) {
            super(bdf, null);
            this.classCode = classCode;
        }

        @Override
        public BusType bus() {
            return BusType.PCI;
        }

        @Override
        public boolean matches(MatchEntry entry) {
            return entry instanceof MatchEntry.Pci p && p.matches(0x10de, 0x2330, 0x10de, 0x2330, classCode);
        }
    }

    /**
     * A DMA API without IOMMU (bus address = physical address) that only knows what dmatest uses and records what
     * is mapped, so the test sees every mapping undone. {@code corrupt} makes the engine flip one byte.
     */
    static class DirectDma implements DmaApi {
        final HostMemory memory;
        final Map<Long, Long> mapped = new HashMap<>();
        int maps;
        boolean corrupt;

        DirectDma(HostMemory memory) {
            this.memory = memory;
        }

        @Override
        public String deviceName() {
            return "fake";
        }

        @Override
        public long dmaMask() {
            return -1L;
        }

        @Override
        public void setDmaMask(long mask) {
        }

        @Override
        public long mapSingle(long physAddr, long size, DmaDirection direction) {
            maps++;
            mapped.merge(physAddr, size, (a, b) -> {
                throw new AssertionError("double map of 0x" + Long.toHexString(physAddr));
            });
            return physAddr;
        }

        @Override
        public void unmapSingle(long dmaAddress, long size, DmaDirection direction) {
            Long had = mapped.remove(dmaAddress);
            if (had == null || had != size) {
                throw new ErrnoException(Errno.EINVAL, "unmap of unknown mapping 0x" + Long.toHexString(dmaAddress));
            }
        }

        private void check(long bus, long len) {
            boolean ok = mapped.entrySet().stream().anyMatch(e -> bus >= e.getKey() && bus + len <= e.getKey() + e.getValue());
            if (!ok) {
                throw new DmaFaultException("fake", bus, false, "not mapped");
            }
        }

        @Override
        public BusMaster busMaster() {
            return new BusMaster() {
                @Override
                public void read(long busAddr, MemorySegment dst) {
                    check(busAddr, dst.byteSize());
                    memory.read(busAddr, dst);
                }

                @Override
                public void write(long busAddr, MemorySegment src) {
                    check(busAddr, src.byteSize());
                    if (corrupt) {
                        src.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) ~src.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0));
                    }
                    memory.write(busAddr, src);
                }

                @Override
                public long readLong(long busAddr) {
                    throw new UnsupportedOperationException();
                }

                @Override
                public void writeLong(long busAddr, long value) {
                    throw new UnsupportedOperationException();
                }

                @Override
                public long compareAndSwap(long busAddr, long compare, long swap) {
                    throw new UnsupportedOperationException();
                }

                @Override
                public long fetchAndAdd(long busAddr, long add) {
                    throw new UnsupportedOperationException();
                }
            };
        }

        @Override
        public void syncSingleForCpu(long dmaAddress, long size, DmaDirection direction) {
        }

        @Override
        public void syncSingleForDevice(long dmaAddress, long size, DmaDirection direction) {
        }

        @Override
        public MappedSg mapSg(SgTable table, DmaDirection direction) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void unmapSg(MappedSg mapped, DmaDirection direction) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void syncSgForCpu(MappedSg mapped, DmaDirection direction) {
        }

        @Override
        public void syncSgForDevice(MappedSg mapped, DmaDirection direction) {
        }

        @Override
        public CoherentBuffer allocCoherent(long size) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void freeCoherent(CoherentBuffer buffer) {
            throw new UnsupportedOperationException();
        }
    }

    Machine machine;
    DmaTestDriver driver;

    @BeforeEach
    void boot() {
        machine = Machine.bootDefault();
        driver = new DmaTestDriver(machine);
        machine.devices().registerDriver(driver);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void copiesThroughTheDeviceAndFreesEverythingOnRemove() {
        long before = machine.memory().allocatedFrames();
        DirectDma dma = new DirectDma(machine.memory());
        Fn gpu = new Fn("0000:01:00.0", 0x030200);
        machine.devices().addDevice(gpu, dma);

        assertEquals(driver, gpu.driver().orElseThrow());
        DmaTestRun run = driver.runs().getFirst();
        assertEquals(new DmaTestRun.Result(8, 0, 8 * 2 * 16384, "ok"), run.result());
        assertEquals(8, dma.maps / 2, "two mappings per test");
        assertTrue(dma.mapped.isEmpty(), "nothing left mapped after probe");
        assertEquals(before + 8, machine.memory().allocatedFrames(), "two 16 KiB buffers held while bound");
        assertEquals(1, gpu.devres().size(), "the destination buffer is device-managed");

        machine.devices().unregisterDriver(driver);
        assertFalse(gpu.driver().isPresent());
        assertEquals(before, machine.memory().allocatedFrames());
        assertEquals(0, gpu.devres().size());
        assertTrue(driver.runs().isEmpty());
    }

    @Test
    void reportsCorruptedCopies() {
        DirectDma dma = new DirectDma(machine.memory());
        dma.corrupt = true;
        Fn gpu = new Fn("0000:01:00.0", 0x030200);
        machine.devices().addDevice(gpu, dma);

        DmaTestRun.Result r = driver.runs().getFirst().result();
        assertEquals(8, r.failures());
        assertTrue(r.dma().startsWith("failed: 1 bytes wrong"), r.dma());
    }

    @Test
    void withoutDmaApiOnlyTheCpuCheckRuns() {
        long before = machine.memory().allocatedFrames();
        Fn gpu = new Fn("0000:01:00.0", 0x030200);
        machine.devices().addDevice(gpu, null);

        DmaTestRun.Result r = driver.runs().getFirst().result();
        assertEquals(0, r.failures());
        assertTrue(r.dma().startsWith("skipped (ENODEV"), r.dma());
        machine.devices().removeDevice(gpu);
        assertEquals(before, machine.memory().allocatedFrames());
        assertTrue(machine.tracer().select(e -> e.kind() == TraceKind.UNBIND).size() == 1);
    }

    @Test
    void claimsOnly3dControllers() {
        Fn hca = new Fn("0000:02:00.0", 0x020700);
        Fn vga = new Fn("0000:03:00.0", 0x030000);
        machine.devices().addDevice(hca, null);
        machine.devices().addDevice(vga, null);
        assertFalse(hca.driver().isPresent());
        assertFalse(vga.driver().isPresent());
        assertTrue(driver.runs().isEmpty());
    }

    @Test
    void aFailingProbeLeavesNothingAllocated() {
        long before = machine.memory().allocatedFrames();
        DirectDma dma = new DirectDma(machine.memory()) {
            @Override
            public long mapSingle(long physAddr, long size, DmaDirection direction) {
                throw new IllegalStateException("boom");
            }
        };
        Fn gpu = new Fn("0000:01:00.0", 0x030200);
        machine.devices().addDevice(gpu, dma);
        assertFalse(gpu.driver().isPresent());
        assertEquals(before, machine.memory().allocatedFrames());
        assertEquals(1, machine.tracer().select(e -> e.kind() == TraceKind.PROBE_FAILED).size());
    }
}
