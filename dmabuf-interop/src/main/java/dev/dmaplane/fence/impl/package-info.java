/** The machinery behind {@link dev.dmaplane.fence}: fence state, the ww_mutex wait list, the reservation table. Private. */
package dev.dmaplane.fence.impl;
