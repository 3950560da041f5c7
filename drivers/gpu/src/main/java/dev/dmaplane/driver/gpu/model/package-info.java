/** The GPU's hardware: its device model ({@code model: gpu}) and the register and ring layout its driver programs. */
package dev.dmaplane.driver.gpu.model;
