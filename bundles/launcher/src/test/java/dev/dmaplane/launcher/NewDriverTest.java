package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ./dmaplane new-driver NAME} as docs/WRITING-A-DRIVER.md describes it: the name becomes the device model's,
 * so the names of the models the project ships (framework's copyengine, drivers/crc, drivers/gpu) are refused with
 * the name in the message and nothing written.
 */
class NewDriverTest {
    @TempDir
    Path tmp;

    @Test
    void namesOfTheShippedModelsAreRefused() {
        for (String name : List.of("copyengine", "crc", "gpu")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> NewDriver.generate(name, null, tmp, "0.1.0"), name);
            assertTrue(e.getMessage().contains("'" + name + "' is taken"), e.getMessage());
            assertFalse(Files.exists(tmp.resolve(name)), "nothing generated for " + name);
        }
        assertEquals(0, tmp.toFile().list().length);
    }
}
