"""Reflink copies: a file's bytes shared with a new file, copy on write (Linux FICLONE).

XFS (``mkfs.xfs -m reflink=1``, the default since xfsprogs 5.1), btrfs, bcachefs and a few
others can make a new file share the extents of another: no data is read or written, no
disk space is used until one of the two is written, and the new file keeps the bytes it was
cloned with whatever later happens to the other (copy on write). The seed cache uses it for
the bytes of a local bucket's object when they must be copied (see `SeedCache.begin`'s
``source``). Where the filesystem cannot (ext4, tmpfs, two different filesystems, not Linux)
the caller copies the bytes itself: :func:`clone` says which.
"""

from __future__ import annotations

import errno
import sys

__all__ = ["FICLONE", "clone", "copy_instead"]

# _IOW(0x94, 9, int) from linux/fs.h: ioctl(dest_fd, FICLONE, src_fd) clones the whole file.
FICLONE = 0x40049409

# The errors that mean "no reflink here" (the caller copies), per ioctl_ficlone(2):
# EOPNOTSUPP the filesystem cannot share extents (ext4, tmpfs; also ENOTSUP, the same value
# on Linux), EXDEV source and destination on different filesystems (or mounts), EINVAL
# the filesystem refused these two files (e.g. block alignment), ENOTTY/ENOSYS no such
# ioctl at all. Anything else (EBADF, EIO, ENOSPC, EPERM, ...) is a real error.
_COPY_INSTEAD = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL,
                           errno.ENOTTY, errno.ENOSYS})


def copy_instead(err: int) -> bool:
    """True when a FICLONE that failed with ``err`` means "copy the bytes instead"."""
    return err in _COPY_INSTEAD


def clone(src_fd: int, dst_fd: int) -> bool:
    """Make ``dst_fd``'s file share all of ``src_fd``'s bytes (its length becomes the
    source's). True when done; False when the filesystem cannot (``copy_instead``), or
    not on Linux: the caller copies. Raises OSError for other failures (disk full, I/O).
    """
    if not sys.platform.startswith("linux"):
        return False
    import fcntl  # Unix only; imported here so the module loads everywhere

    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno is not None and copy_instead(exc.errno):
            return False
        raise
    return True
