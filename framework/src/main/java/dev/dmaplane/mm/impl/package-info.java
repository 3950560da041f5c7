/** The machinery behind {@link dev.dmaplane.mm.AddressSpace}: page tables, VMA tree, faults, GUP, notifiers. Private. */
package dev.dmaplane.mm.impl;
