"""The promptable backend: SAM built from segment_anything's parts, loaded, encoded, decoded."""
from .backend import DecoderOutput, ImageEmbedding, SAMBackend
from .builder import SAM_ARCHS, build_sam_model, detect_arch
from .checkpoint import CheckpointError, load_sam_checkpoint, read_checkpoint
from .decoder_hooks import guided_decoder

__all__ = ['SAMBackend', 'ImageEmbedding', 'DecoderOutput', 'SAM_ARCHS', 'build_sam_model',
           'detect_arch', 'CheckpointError', 'load_sam_checkpoint', 'read_checkpoint',
           'guided_decoder']
