"""Content digests (sha256) of tensors, state dicts and files: what cache keys are made of.

A file's digest is remembered in a small JSON note per file (by real path, size and
modification time), so a multi-GB checkpoint is read once per machine, not once per run.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Mapping, Optional

import torch
from torch import Tensor

from .atomic import atomic_write_text

CHUNK = 1 << 20


def update_with_tensor(h: 'hashlib._Hash', t: Tensor) -> None:
    """Feed ``t``'s dtype, shape and exact bytes (any dtype, any device) to the hash ``h``."""
    t = t.detach()
    h.update(f'{t.dtype}{tuple(t.shape)}'.encode())
    flat = t.to('cpu').contiguous().reshape(-1)
    if flat.numel():
        h.update(memoryview(flat.view(torch.uint8).numpy()))


def tensor_digest(t: Tensor) -> str:
    """sha256 (hex) of a tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    update_with_tensor(h, t)
    return h.hexdigest()


def state_dict_digest(state: Mapping[str, Tensor]) -> str:
    """sha256 (hex) of a state dict: every key with its tensor, in sorted key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode() + b'\0')
        update_with_tensor(h, state[key])
    return h.hexdigest()


def file_sha256(path: str, memo_dir: Optional[str] = None) -> str:
    """sha256 (hex) of a file's bytes.

    With ``memo_dir``, the digest is kept there under the file's real path with its size and
    modification time, and reused while both are unchanged (a note that cannot be written is
    skipped: the digest is still right, only computed again next time).
    """
    real = osp.realpath(path)
    st = os.stat(real)
    note = None
    if memo_dir is not None:
        name = hashlib.sha256(real.encode()).hexdigest()[:32] + '.json'
        note = osp.join(memo_dir, name)
        try:
            with open(note) as f:
                memo = json.load(f)
            if (memo.get('path') == real and memo.get('size') == st.st_size
                    and memo.get('mtime_ns') == st.st_mtime_ns):
                return str(memo['sha256'])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    h = hashlib.sha256()
    with open(real, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            h.update(chunk)
    digest = h.hexdigest()
    if note is not None:
        try:
            atomic_write_text(note, json.dumps(dict(path=real, size=st.st_size,
                                                    mtime_ns=st.st_mtime_ns, sha256=digest)))
        except OSError:
            pass
    return digest


__all__ = ['update_with_tensor', 'tensor_digest', 'state_dict_digest', 'file_sha256']
