package dev.dmaplane.driver.softroce;

import org.junit.jupiter.api.AfterEach;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The fixture of the Soft-RoCE tests that run on both HCAs ({@link Hcas}, the rxe driver bound as in
 * {@code drivers/infiniband/sw/rxe/rxe.c}): closed after each test, which must leave no rxe thread behind.
 */
abstract class HcaTestBase {
    final Hcas h = new Hcas();

    @AfterEach
    void closeHcas() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }
}
