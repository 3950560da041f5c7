/**
 * Storage behind an inode: the page cache over a simulated disk, and DAX block storage; and the inode's page
 * operations only the mm layer calls ({@link dev.dmaplane.fs.impl.InodePages}, {@link dev.dmaplane.fs.impl.FileMapper}).
 * Private to the bundle.
 */
package dev.dmaplane.fs.impl;
