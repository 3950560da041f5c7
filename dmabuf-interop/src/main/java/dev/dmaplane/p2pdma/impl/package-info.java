/** The p2pdma core: pair judgement, provider page pools, mapping bookkeeping. Private to the bundle. */
package dev.dmaplane.p2pdma.impl;
