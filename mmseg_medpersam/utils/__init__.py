"""Rules shared by every layer: reading weight files, Dice on masks, bounded caches."""
from .checkpoint import CheckpointError, read_file, strict_load, unwrap_state_dict

__all__ = ['CheckpointError', 'read_file', 'strict_load', 'unwrap_state_dict']
