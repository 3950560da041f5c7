package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.driver.dmatest.DmaTestResult;

/** Where dmatest makes a result visible while it is bound: an OSGi service in the framework, a list in tests. */
@FunctionalInterface
interface ResultPublisher {
    /** Publishes {@code result}; closing the handle withdraws it. */
    AutoCloseable publish(DmaTestResult result);
}
