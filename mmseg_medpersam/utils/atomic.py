"""Atomic, checked file writes: a temporary name in the same folder, then a rename into place.

A write that fails (full disk, read-only folder, a directory where the file should be) raises
``WriteError`` naming the file and the reason, and leaves an earlier file at that path intact.
"""
from __future__ import annotations

import os
import os.path as osp
import tempfile

import numpy as np

from ..structures.errors import WriteError


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


def atomic_write_png(path: str, array: np.ndarray) -> None:
    """A (H, W) or (H, W, 3) uint8 / uint16 array as a PNG, atomically."""
    import cv2
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(array))
    if not ok:
        raise WriteError(f'{path}: cannot encode a {array.dtype} {array.shape} array as PNG')
    atomic_write_bytes(path, encoded.tobytes())


def check_writable_dir(path: str, what: str = 'output folder') -> None:
    """Make sure ``path`` is a folder we can write into, or can be made one, before any work.

    Probes the folder (or, when it does not exist yet, its nearest existing parent, so
    nothing is created) with a temporary file that is removed. Raises ``WriteError``.
    """
    if osp.exists(path) and not osp.isdir(path):
        raise WriteError(f'{path}: {what} is a file, expected a folder')
    probe_dir = osp.abspath(path)
    while not osp.exists(probe_dir):
        probe_dir = osp.dirname(probe_dir)
    if not osp.isdir(probe_dir):
        raise WriteError(f'{path}: cannot make this {what}: {probe_dir} is a file')
    try:
        fd, probe = tempfile.mkstemp(prefix='.write-check.', dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WriteError(f'{path}: cannot write into this {what} ({e.strerror or e})') from e


def check_writable_file(path: str, what: str = 'output file') -> None:
    """Make sure ``path`` can be written (its folder writable, not a directory), before any
    work; an existing file there is left as it is."""
    if osp.isdir(path):
        raise WriteError(f'{path}: {what} is a directory, expected a file name')
    check_writable_dir(osp.dirname(osp.abspath(path)), f'folder of the {what}')


__all__ = ['WriteError', 'atomic_write_bytes', 'atomic_write_text', 'atomic_write_png',
           'check_writable_dir', 'check_writable_file']
