/** The siw driver: iWARP (RDMAP over DDP over MPA over TCP) as a second HCA driver. Private: the driver is a service. */
package dev.dmaplane.driver.siw;
