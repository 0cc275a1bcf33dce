"""Atomic, checked file writes: a temporary name in the same folder, then a rename into place.

A write that fails (full disk, read-only folder, a directory where the file should be) raises
``WriteError`` naming the file and the reason, and leaves an earlier file at that path intact.
"""
from __future__ import annotations

import os
import os.path as osp
import tempfile


class WriteError(OSError):
    """An output file could not be written; the message names it and says why."""


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    folder = osp.dirname(osp.abspath(path))
    if osp.isdir(path):
        raise WriteError(f'{path}: is a directory, expected a file name')
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    except OSError as e:
        raise WriteError(f'{path}: cannot write ({e.strerror or e})') from e
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what open() would give, not mkstemp's 0600
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteError(f'{path}: cannot write ({e.strerror or e})') from e


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode('utf-8'))


__all__ = ['WriteError', 'atomic_write_bytes', 'atomic_write_text']
