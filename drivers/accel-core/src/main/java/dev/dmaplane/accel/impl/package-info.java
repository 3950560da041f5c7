/** The accelerator core's implementation: devices, contexts, buffer objects, placement, GPU VMs. Not exported. */
package dev.dmaplane.accel.impl;
