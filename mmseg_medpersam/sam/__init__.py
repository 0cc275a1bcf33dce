"""The promptable backend: SAM-family models built, loaded, encoded, decoded; knows no method."""
from .backend import DecoderHook, DecoderOutput, ImageEmbedding, SAMBackend
from .builder import SAM_ARCHS, ModelArch, build_sam_model, detect_arch, get_arch
from .checkpoint import CheckpointError, load_sam_checkpoint, read_checkpoint
from .geometry import FrameGeometry

__all__ = ['SAMBackend', 'ImageEmbedding', 'DecoderOutput', 'DecoderHook', 'SAM_ARCHS',
           'ModelArch', 'build_sam_model', 'detect_arch', 'get_arch', 'CheckpointError',
           'load_sam_checkpoint', 'read_checkpoint', 'FrameGeometry']
