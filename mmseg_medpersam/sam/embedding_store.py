"""Image embeddings kept on disk, shared by runs, configs, tools and processes.

Comparing methods means running several configs on the same images with the same frozen
model; the image encoder is most of the cost (on CPUs and with ViT-H on GPUs), so each
embedding is computed once and read back by every later run. ``SAMBackend`` builds the key
(everything that changes an embedding) and this module stores what the encoder returned,
bit for bit.

* **Where:** ``$MEDPERSAM_CACHE_DIR/embeddings``; without the variable
  ``$XDG_CACHE_HOME/mmseg-medpersam/embeddings`` (``~/.cache/mmseg-medpersam/embeddings``).
* **How much:** at most ``$MEDPERSAM_CACHE_MAX_GIB`` GiB (default 4, about 1000 embeddings of
  4 MiB); after each write the entries used least recently (last read or written) are
  removed until the folder fits.
* **Safe:** an entry is written under a temporary name and renamed into place, so a reader
  sees a whole entry or none, and several processes may write the same key at once (the last
  rename wins; both wrote the same bytes). Every entry ends with the sha256 of everything
  before it and names its own key: a damaged, truncated or foreign file is never used, the
  embedding is computed again and the entry replaced. A folder that cannot be written only
  costs the reuse (one warning), never the run.

An entry: ``MAGIC``, a 4-byte little-endian header length, a JSON header (key, what the key
covers, dtype, shape; padded so the tensor bytes start 64-byte aligned), the tensor's raw
bytes, and the 32-byte sha256 of all of that.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import os.path as osp
import struct
import time
from typing import List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from ..utils.atomic import atomic_write_bytes

ENV_DIR = 'MEDPERSAM_CACHE_DIR'
ENV_MAX_GIB = 'MEDPERSAM_CACHE_MAX_GIB'
DEFAULT_MAX_GIB = 4.0
GIB = 1 << 30
MAGIC = b'MPSAMEMB'
SUFFIX = '.emb'
ALIGN = 64
DIGEST_SIZE = 32
#: Temporary files older than this are leftovers of a writer that died; removed when evicting.
STALE_TEMP_SECONDS = 3600.0


def cache_root() -> str:
    """The plugin's cache folder: ``$MEDPERSAM_CACHE_DIR``, else the user's cache folder."""
    root = os.environ.get(ENV_DIR)
    if root:
        return osp.abspath(osp.expanduser(root))
    base = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(base, 'mmseg-medpersam')


def max_bytes_from_env() -> int:
    """The size bound in bytes: ``$MEDPERSAM_CACHE_MAX_GIB`` GiB (default 4)."""
    text = os.environ.get(ENV_MAX_GIB, '').strip()
    if not text:
        return int(DEFAULT_MAX_GIB * GIB)
    try:
        gib = float(text)
    except ValueError:
        gib = float('nan')
    if not math.isfinite(gib) or gib < 0:
        raise ValueError(f'{ENV_MAX_GIB}={text!r}: give the embedding cache size in GiB, a '
                         f'number >= 0 (default {DEFAULT_MAX_GIB:g}).')
    return int(gib * GIB)


def entry_key(material: dict) -> str:
    """The key (sha256 hex) of what determines an embedding (a JSON-able dict)."""
    text = json.dumps(material, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(text.encode()).hexdigest()


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name.replace('torch.', ''), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f'not a tensor dtype: {name!r}')
    return dtype


def pack_entry(key: str, material: dict, tensor: Tensor) -> bytes:
    """The bytes of one entry (see the module docstring)."""
    t = tensor.detach().to('cpu').contiguous()
    header = json.dumps(dict(key=key, material=material, dtype=str(t.dtype).replace('torch.', ''),
                             shape=list(t.shape)), sort_keys=True).encode()
    pad = -(len(MAGIC) + 4 + len(header)) % ALIGN
    header += b' ' * pad
    payload = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b''
    body = b''.join((MAGIC, struct.pack('<I', len(header)), header, payload))
    return body + hashlib.sha256(body).digest()


def unpack_entry(data: bytearray, key: str) -> Tensor:
    """The tensor of an entry written under ``key``; ``ValueError`` when it is damaged."""
    head = len(MAGIC) + 4
    if len(data) < head + DIGEST_SIZE or bytes(data[:len(MAGIC)]) != MAGIC:
        raise ValueError('not an embedding entry (or truncated)')
    body = memoryview(data)[:-DIGEST_SIZE]
    if hashlib.sha256(body).digest() != bytes(data[-DIGEST_SIZE:]):
        raise ValueError('checksum mismatch (damaged or truncated)')
    (size, ) = struct.unpack('<I', bytes(data[len(MAGIC):head]))
    header = json.loads(bytes(data[head:head + size]))
    if header.get('key') != key:
        raise ValueError('written under another key')
    dtype, shape = _dtype(header['dtype']), [int(s) for s in header['shape']]
    start, end = head + size, len(data) - DIGEST_SIZE
    numel = math.prod(shape)
    if (end - start) != numel * torch.empty((), dtype=dtype).element_size():
        raise ValueError('payload size does not match its shape')
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(data, dtype=dtype, count=numel, offset=start).reshape(shape)


class EmbeddingStore:
    """A folder of embedding entries, bounded in size (see the module docstring).

    Args:
        folder: where the entries are (created at the first write).
        max_bytes: the size bound; 0 stores nothing.
    """

    def __init__(self, folder: str, max_bytes: int = int(DEFAULT_MAX_GIB * GIB)) -> None:
        if int(max_bytes) < 0:
            raise ValueError(f'max_bytes must be >= 0, got {max_bytes}')
        self.folder = osp.abspath(folder)
        self.max_bytes = int(max_bytes)
        self.writable = True
        self._warned: set = set()

    @classmethod
    def from_env(cls) -> 'EmbeddingStore':
        """The shared store: ``cache_root()/embeddings``, within ``$MEDPERSAM_CACHE_MAX_GIB``."""
        return cls(osp.join(cache_root(), 'embeddings'), max_bytes_from_env())

    @property
    def checkpoint_digest_dir(self) -> str:
        """Where the digests of weight files are remembered (``utils.digest.file_sha256``)."""
        return osp.join(self.folder, 'checkpoints')

    def path(self, key: str) -> str:
        return osp.join(self.folder, key + SUFFIX)

    def warn_once(self, what: str, message: str) -> None:
        """Log ``message`` as a warning the first time this store meets ``what``."""
        if what not in self._warned:
            self._warned.add(what)
            print_log(message, logger='current', level=logging.WARNING)

    # ------------------------------------------------------------------ read / write
    def load(self, key: str) -> Optional[Tensor]:
        """The tensor stored under ``key`` (CPU), or None when there is none or it is damaged.

        A hit marks the entry as just used (its modification time), for the size bound.
        """
        path = self.path(key)
        try:
            with open(path, 'rb') as f:
                data = bytearray(os.fstat(f.fileno()).st_size)
                read = f.readinto(data)
        except OSError:
            return None
        try:
            if read != len(data):
                raise ValueError('short read')
            tensor = unpack_entry(data, key)
        except (ValueError, KeyError, TypeError, struct.error) as e:
            self.warn_once('damaged:' + key, f'embedding cache: {path} is unusable ({e}); '
                       'the embedding is computed again and the entry replaced.')
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return tensor

    def save(self, key: str, material: dict, tensor: Tensor) -> bool:
        """Store ``tensor`` under ``key`` (atomically), then keep the folder within its bound.

        Returns whether it was written; a folder that cannot be written is warned about once
        and not tried again by this store.
        """
        if not self.writable or self.max_bytes == 0:
            return False
        try:
            atomic_write_bytes(self.path(key), pack_entry(key, material, tensor))
        except OSError as e:
            self.writable = False
            self.warn_once('write', f'embedding cache: cannot write into {self.folder} ({e}); '
                       'embeddings are not kept for later runs.')
            return False
        self.evict()
        return True

    # ------------------------------------------------------------------ size bound
    def entries(self) -> List[Tuple[float, int, str]]:
        """(last use, bytes, path) of every entry, oldest first; stale temporaries removed."""
        found = []
        now = time.time()
        try:
            scan = list(os.scandir(self.folder))
        except OSError:
            return []
        for item in scan:
            try:
                if item.name.endswith(SUFFIX) and item.is_file():
                    st = item.stat()
                    found.append((st.st_mtime, st.st_size, item.path))
                elif item.name.endswith('.tmp') and item.name.startswith('.'):
                    if now - item.stat().st_mtime > STALE_TEMP_SECONDS:
                        os.unlink(item.path)
            except OSError:  # removed by another process meanwhile
                continue
        return sorted(found)

    def size(self) -> int:
        """Bytes held by the entries."""
        return sum(size for _, size, _ in self.entries())

    def evict(self) -> None:
        """Remove the least recently used entries until the folder is within ``max_bytes``."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            try:
                os.unlink(path)
            except OSError:  # already removed by another process
                pass
            total -= size


__all__ = ['EmbeddingStore', 'cache_root', 'max_bytes_from_env', 'entry_key', 'pack_entry',
           'unpack_entry', 'ENV_DIR', 'ENV_MAX_GIB', 'DEFAULT_MAX_GIB']
