"""An output folder that belongs to one run: its settings, a lock, and a record of what each
finished target was made from, so a resumed run redoes exactly what changed.

* ``manifest.json``: the settings that decide the outputs (a resumed run must have the same).
* ``progress.jsonl``: one line per finished target, appended as it is written: its outputs,
  the digest of its input pixels and of the references, and the digest of its mask file.
* ``.medpersam.lock``: held while a run writes; a second run into the folder is refused.

A run into a folder that holds another run's outputs is refused unless it resumes that run
(``--resume``: same settings) or replaces it (``--overwrite``: the earlier run's files are
removed first, so the folder never mixes two runs).
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional

import numpy as np

from ..structures.errors import ConfigError, WriteError
from ..utils.atomic import atomic_write_text, check_writable_dir

MANIFEST = 'manifest.json'
PROGRESS = 'progress.jsonl'
SUMMARY = 'summary.json'
LOCK = '.medpersam.lock'
#: What a run writes (besides the folders' files it records in progress and summary).
OWN_FILES = (MANIFEST, PROGRESS, SUMMARY)


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of arrays' shapes, dtypes and bytes: what a target was made from."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f'{a.shape}{a.dtype}'.encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_digest(path: str) -> Optional[str]:
    """sha256 of a file's bytes, or None when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return hashlib.file_digest(f, 'sha256').hexdigest()
    except OSError:
        return None


class OutputFolder:
    """The out-dir of one run (``tools/infer.py``): checked, locked, and its records.

    Args:
        root: the folder.
        settings: what decides the outputs (config and its sha256, references, options...).
        resume: complete the run that wrote ``root`` (same settings), keeping what is
            unchanged.
        overwrite: replace whatever run wrote ``root``.
    """

    def __init__(self, root: str, settings: dict, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.root = root
        self.settings = settings
        self.resume = resume
        self.overwrite = overwrite
        self.done: Dict[str, dict] = {}
        self._lock = None

    # ------------------------------------------------------------------ before any work
    def check(self) -> 'OutputFolder':
        """Check the folder, take its lock, and settle with an earlier run's outputs; raises
        ``ConfigError`` (exit 4) when the run may not write here. Writes nothing but the lock
        of an existing folder (``begin`` writes, once the inputs are checked)."""
        check_writable_dir(self.root, 'output folder (--out-dir)')
        if not osp.isdir(self.root):
            return self  # a new folder: made and locked by ``begin``
        self._take_lock()
        earlier = self._read_manifest()
        holds = self._holds_outputs()
        if self.overwrite or not holds:
            pass
        elif self.resume:
            if earlier is None and holds:
                raise ConfigError(f'{self.root}: holds outputs without a {MANIFEST} (written by '
                                  'another tool or version): --resume cannot tell how they were '
                                  'made; use --overwrite or another --out-dir.')
            if earlier is not None:
                changed = sorted(k for k in set(earlier) | set(self.settings)
                                 if earlier.get(k) != self.settings.get(k))
                if changed:
                    raise ConfigError(f'{self.root}: written with other settings '
                                      f'({", ".join(changed)} differ): --resume would mix two '
                                      'runs; use --overwrite or another --out-dir.')
            self.done = self._read_progress()
        else:
            raise ConfigError(f'{self.root}: holds the outputs of an earlier run: --resume to '
                              'complete it, --overwrite to replace it, or another --out-dir.')
        return self

    def begin(self) -> None:
        """Start writing: ``--overwrite`` removes the earlier run's files, the manifest is
        written, the output folders made."""
        if self._lock is None:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as e:
                raise WriteError(f'{self.root}: cannot make the output folder ({e.strerror}).'
                                 ) from e
            self._take_lock()
        if self.overwrite:
            self._remove_earlier_outputs()
        for sub in ('masks', 'panels'):
            check_writable_dir(osp.join(self.root, sub))
        atomic_write_text(osp.join(self.root, MANIFEST), json.dumps(self.settings, indent=2))

    def _take_lock(self) -> None:
        import fcntl
        path = osp.join(self.root, LOCK)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f'{path}: cannot create the run lock ({e.strerror}).') from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f'{self.root}: another run is writing into this folder now; wait '
                              'for it or use another --out-dir.')
        self._lock = fd

    def close(self) -> None:
        """Release the lock (also released when the process ends)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _read_manifest(self) -> Optional[dict]:
        path = osp.join(self.root, MANIFEST)
        if not osp.isfile(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            if self.overwrite:
                return None
            raise ConfigError(f'{path}: unreadable ({e}); use --overwrite') from e

    def _holds_outputs(self) -> bool:
        """Outputs of a run (a manifest alone, left by a run stopped before any target, is
        none)."""
        if any(osp.exists(osp.join(self.root, f)) for f in (PROGRESS, SUMMARY)):
            return True
        return any(osp.isdir(osp.join(self.root, sub)) and os.listdir(osp.join(self.root, sub))
                   for sub in ('masks', 'panels', 'volumes'))

    def _read_progress(self) -> Dict[str, dict]:
        """Finished targets by name (a torn last line is ignored: that target is redone)."""
        out = {}
        try:
            with open(osp.join(self.root, PROGRESS)) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    out[entry['name']] = entry
        except OSError:
            pass
        return out

    def _earlier_files(self) -> Iterable[str]:
        for entry in self._read_progress().values():
            yield from entry.get('files', [])
        try:
            with open(osp.join(self.root, SUMMARY)) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = {}
        for t in summary.get('targets', []):
            yield from (t.get('mask'), t.get('panel'))
        for v in summary.get('volumes', []):
            yield from v.get('files', [v.get('labels'), v.get('dicom_seg')])

    def _remove_earlier_outputs(self) -> None:
        """``--overwrite``: the earlier run's files go (only those it recorded, and the
        masks/panels/volumes folders' files), so nothing of it mixes with the new run."""
        names = {f for f in self._earlier_files() if f}
        for sub in ('masks', 'panels', 'volumes'):
            folder = osp.join(self.root, sub)
            if osp.isdir(folder):
                names |= {osp.join(sub, f) for f in os.listdir(folder)}
        for rel in sorted(names) + list(OWN_FILES):
            path = osp.join(self.root, rel)
            if osp.isfile(path):
                try:
                    os.remove(path)
                except OSError as e:
                    raise WriteError(f'{path}: cannot remove the earlier output ({e.strerror}).'
                                     ) from e

    # ------------------------------------------------------------------ per target
    def kept(self, name: str, input_digest: str, references_digest: str) -> Optional[dict]:
        """The earlier record of ``name`` if it can be kept: made from the same input pixels
        and references, its files all there and unchanged; else None (segment it again)."""
        entry = self.done.get(name)
        if entry is None or entry.get('input') != input_digest \
                or entry.get('references') != references_digest:
            return None
        for rel, digest in entry.get('digests', {}).items():
            if file_digest(osp.join(self.root, rel)) != digest:
                return None
        return entry

    def record(self, name: str, input_digest: str, references_digest: str,
               files: List[str], **extra) -> dict:
        """Append a finished target's record (its files are written: their digests go in)."""
        entry = dict(name=name, input=input_digest, references=references_digest, files=files,
                     digests={f: file_digest(osp.join(self.root, f)) for f in files}, **extra)
        path = osp.join(self.root, PROGRESS)
        try:
            with open(path, 'a') as f:
                f.write(json.dumps(entry) + '\n')
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise WriteError(f'{path}: cannot record a finished target ({e.strerror}); the '
                             'outputs written so far are complete.') from e
        self.done[name] = entry
        return entry


__all__ = ['MANIFEST', 'OutputFolder', 'PROGRESS', 'SUMMARY', 'array_digest', 'file_digest']
