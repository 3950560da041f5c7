/** Storage behind an inode: the page cache over a simulated disk, and DAX block storage. Private to the bundle. */
package dev.dmaplane.fs.impl;
