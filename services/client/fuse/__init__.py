"""A dataset as a read-only file system: `reservoir mount NAME MOUNTPOINT`.

    tree.py     paths -> attributes, listings cached; errors -> errno (no FUSE types)
    handles.py  open files (a ReservoirFile each) and directory snapshots
    inodes.py   the inode numbers the kernel holds, back to paths
    ops.py      the FUSE glue: pyfuse3 operations over the three above
    mount.py    checks, mount options, foreground/background, signals, unmount

The adapter holds only a `reservoir.client.Client`: everything it shows comes from
the library, as any other client's view would.

Why pyfuse3, not mfusepy (measured on a 2-core machine, a 256 MiB file cached by
two workers; GB/s for a first read with the page cache cold / a second read):

    binding alone, an in-memory file    pyfuse3 1.1-1.6 / 1.9-2.2
                                        mfusepy 0.8-1.7 / 1.9-2.3
    through Reservoir, 128 KiB requests pyfuse3 0.18-0.26 / 1.5-2.0
                                        mfusepy, one thread 0.29-0.38 / 1.3-1.8
                                        mfusepy, threaded 0.13-0.25 / 1.3-1.9
    through Reservoir, 1 MiB requests   pyfuse3 0.30-0.50 / 1.3-2.0
                                        mfusepy, one thread 0.28-0.46 / 1.3-1.9
    the client library, warm, same runs 0.44-0.81; a local file, page cache 2.0-2.3

The second read is the kernel's page cache either way (keep_cache; a local file's
page-cache read is 2.1-2.3 GB/s here). With 1 MiB requests (READ_AHEAD_KB) the
first reads are alike, and then what decides is concurrency: pyfuse3 serves each
request as a trio task, so a handle's reads keep the kernel's order (its
`ReservoirFile` streams ahead only while reads are sequential) while other files
and lookups go on. mfusepy's threaded loop reorders a handle's reads (44-111 of
2048 arrived backwards, and read-ahead collapsed), and its single-threaded loop
stops the whole mount while one read waits for a cold block from the origin.
pyfuse3's cost: it builds from source (gcc, pkg-config, libfuse3-dev; `make setup`).
"""

from reservoir.client.fuse.mount import MountConfig, serve

__all__ = ["MountConfig", "serve"]
