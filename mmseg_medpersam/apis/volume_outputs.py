"""Label volumes out: a NIfTI label map on the input's grid with an ITK-SNAP label description
beside it, and a DICOM SEG that references every slice of a DICOM series.

Both are assembled from the per-slice label maps by the inverse of the slice layout they were
read with (``datasets.volume``), so they lie where the slices' masks were drawn, in the
input's own stored orientation. Every file is written atomically; a failure is a
``WriteError`` naming the file (exit 5), and what was written before it stays.
"""
from __future__ import annotations

import gzip
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..datasets.dicom import read_series
from ..datasets.volume import Volume
from ..structures.errors import ConfigError, WriteError
from ..utils.atomic import atomic_write_bytes, atomic_write_text
from ..version import __version__

#: A coded concept (value, coding scheme, meaning), e.g. ('10200004', 'SCT', 'Liver').
Code = Tuple[str, str, str]
#: The SEG's default category and type: SNOMED CT "Tissue", a placeholder to be set per class
#: (``ClassInfo.codes``) for a SEG that a PACS or a study will use.
PLACEHOLDER_CODE: Code = ('85756007', 'SCT', 'Tissue')


def _palette(n: int) -> List[Tuple[int, int, int]]:
    """Distinct colours for classes 1..n-1 (0 is black): the tab10 colours, then seeded."""
    base = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    rng = np.random.RandomState(7)
    out = [(0, 0, 0)] + base[:max(n - 1, 0)]
    while len(out) < n:
        out.append(tuple(int(v) for v in rng.randint(40, 256, 3)))
    return out


@dataclass
class ClassInfo:
    """The task's classes as a clinical output names them.

    Attributes:
        names: class names, index 0 the background.
        codes: per class index, (category, type) codes for a DICOM SEG; missing classes get
            ``PLACEHOLDER_CODE`` for both.
        colours: RGB per class (default: a fixed palette).
    """

    names: List[str]
    codes: Dict[int, Tuple[Code, Code]] = field(default_factory=dict)
    colours: Optional[List[Tuple[int, int, int]]] = None

    def __post_init__(self) -> None:
        if self.colours is None:
            self.colours = _palette(len(self.names))

    @classmethod
    def build(cls, num_classes: int, names: Optional[Sequence[str]] = None,
              codes: Optional[dict] = None) -> 'ClassInfo':
        """Names for ``num_classes`` classes (background first; given names are the
        foreground classes', or all of them when ``num_classes`` are given) and codes by class
        name: ``{name: {'category': [value, scheme, meaning], 'type': [...]}}``."""
        names = list(names or [])
        if len(names) == num_classes - 1:
            names = ['background'] + names
        if not names:
            names = ['background'] + (['foreground'] if num_classes == 2
                                      else [f'class {c}' for c in range(1, num_classes)])
        if len(names) != num_classes:
            raise ConfigError(f'{len(names)} class names for {num_classes} classes (background '
                              f'included): {names}')
        parsed = {}
        for name, entry in (codes or {}).items():
            if name not in names[1:]:
                raise ConfigError(f'segment codes for {name!r}, which is not a class '
                                  f'({", ".join(names[1:])})')
            try:
                category, kind = (tuple(str(v) for v in entry[k]) for k in ('category', 'type'))
                assert len(category) == 3 and len(kind) == 3
            except (KeyError, TypeError, AssertionError) as e:
                raise ConfigError(f"segment codes for {name!r}: need 'category' and 'type', "
                                  'each [value, scheme, meaning], e.g. {"category": ["123037004", '
                                  '"SCT", "Anatomical Structure"], "type": ["10200004", "SCT", '
                                  '"Liver"]}') from e
            parsed[names.index(name)] = (category, kind)
        return cls(names, parsed)


def itksnap_label_description(info: ClassInfo) -> str:
    """ITK-SNAP's label description file (Segmentation > Import Label Descriptions)."""
    lines = ['################################################',
             '# ITK-SnAP Label Description File (written by mmseg-medpersam)',
             '# Columns: IDX -R- -G- -B- -A-- VIS MSH LABEL',
             '################################################']
    for c, (name, rgb) in enumerate(zip(info.names, info.colours)):
        alpha, shown = (0, 0) if c == 0 else (1, 1)
        label = 'Clear Label' if c == 0 else name.replace('"', "'")
        lines.append(f'{c:5d} {rgb[0]:5d} {rgb[1]:4d} {rgb[2]:4d} {alpha:8d} {shown:2d} '
                     f'{shown:2d}    "{label}"')
    return '\n'.join(lines) + '\n'


def labels_on_grid(volume: Volume, axis: Optional[int],
                   slices: Dict[int, np.ndarray]) -> np.ndarray:
    """The per-slice label maps (laid out as read) as one uint8 array on the volume's stored
    grid; slices not given are 0."""
    labels = volume.empty_labels()
    layout = volume.layout(axis)
    for k, mask in slices.items():
        layout.insert(labels, k, np.asarray(mask, np.uint8))
    return labels


def write_nifti_labels(path: str, volume: Volume, labels: np.ndarray, info: ClassInfo,
                       header=None) -> List[str]:
    """``labels`` (stored grid) as a NIfTI label map with the volume's affine, marked as a
    label map (intent 'label', no intensity calibration), gzip without a timestamp (identical
    runs give identical bytes), and the ITK-SNAP label description beside it
    (``<name>.label.txt``). Returns the files written."""
    import nibabel as nib
    img = nib.Nifti1Image(labels, volume.affine, header.copy() if header is not None else None)
    hdr = img.header
    hdr.set_data_dtype(np.uint8)
    hdr.set_intent('label')
    hdr.set_slope_inter(1, 0)
    hdr['cal_min'], hdr['cal_max'] = 0, 0
    hdr['descrip'] = b'mmseg-medpersam label map'
    data = nib.Nifti1Image(labels, volume.affine, hdr).to_bytes()
    atomic_write_bytes(path, gzip.compress(data, compresslevel=6, mtime=0))
    description = path[:-len('.nii.gz')] + '.label.txt' if path.endswith('.nii.gz') \
        else path + '.label.txt'
    atomic_write_text(description, itksnap_label_description(info))
    return [path, description]


#: Type 2 patient and study attributes a SEG copies from its sources: an anonymised series
#: often lacks them; they are given empty (as type 2 allows) on the copies passed to highdicom.
_TYPE2 = ('PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyDate',
          'StudyTime', 'AccessionNumber', 'ReferringPhysicianName', 'StudyID')


def write_dicom_seg(path: str, series_path: str, labels: np.ndarray, info: ClassInfo,
                    method: str, model: str = '') -> str:
    """A DICOM SEG (highdicom) of ``labels`` (class indices on the series' stored grid:
    columns, rows, slices) referencing every source slice, one segment per class present,
    labelled with the class names; written atomically. Raises ``WriteError`` naming ``path``."""
    import io

    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    try:
        series = read_series(series_path)
        sources = [pydicom.dcmread(f) for f in series.files]
        for ds in sources:
            for key in _TYPE2:
                if key not in ds:
                    setattr(ds, key, '')
        frames = np.stack([labels[..., k].T for k in range(labels.shape[2])]).astype(np.uint8)
        if series.frames is not None:  # a multi-frame source: its frames in file order
            in_file = np.zeros_like(frames)
            in_file[series.frames] = frames
            frames = in_file
        present = [c for c in range(1, int(frames.max()) + 1) if (frames == c).any()] or [1]
        descriptions = []
        for i, c in enumerate(present):
            category, kind = info.codes.get(c, (PLACEHOLDER_CODE, PLACEHOLDER_CODE))
            descriptions.append(hd.seg.SegmentDescription(
                segment_number=i + 1,
                segment_label=info.names[c] if c < len(info.names) else f'class {c}',
                segmented_property_category=hd.sr.CodedConcept(*category),
                segmented_property_type=hd.sr.CodedConcept(*kind),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=hd.AlgorithmIdentificationSequence(
                    name=method, version=__version__,
                    family=codes.cid7162.ArtificialIntelligence)))
        remap = np.zeros(max(present) + 1, np.uint8)
        remap[present] = np.arange(1, len(present) + 1)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=remap[frames],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer='mmseg-medpersam',
            manufacturer_model_name=method, software_versions=__version__,
            device_serial_number='none', omit_empty_frames=False,
            series_description=f'{method}{" (" + model + ")" if model else ""} segmentation'[:64])
        buffer = io.BytesIO()
        seg.save_as(buffer)
    except WriteError:
        raise
    except Exception as e:
        raise WriteError(f'{path}: the DICOM SEG could not be made ({type(e).__name__}: {e}); '
                         'the NIfTI label volume beside it is written.') from e
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_label_volume(out_dir: str, name: str, volume: Volume, axis: Optional[int],
                       slices: Dict[int, np.ndarray], info: ClassInfo, method: str,
                       model: str = '', header=None) -> List[str]:
    """One volume's slice label maps as ``volumes/<name>_seg.nii.gz`` (+ its label
    description) and, for a DICOM series, ``volumes/<name>_seg.dcm``. Returns the files
    written (the NIfTI first)."""
    labels = labels_on_grid(volume, axis, slices)
    nifti = osp.join(out_dir, 'volumes', name + '_seg.nii.gz')
    outputs = write_nifti_labels(nifti, volume, labels, info, header)
    if volume.native_axis is not None:  # a DICOM series
        outputs.append(write_dicom_seg(osp.join(out_dir, 'volumes', name + '_seg.dcm'),
                                       volume.path, labels, info, method, model))
    return outputs


__all__ = ['ClassInfo', 'PLACEHOLDER_CODE', 'itksnap_label_description', 'labels_on_grid',
           'write_dicom_seg', 'write_label_volume', 'write_nifti_labels']
