# SAM ViT-B (segment_anything weights; downloaded once from Meta's public URL when
# checkpoint is None, or taken from --checkpoint PATH_OR_URL).
_base_ = ['../models/one_shot_sam.py']
model = dict(sam=dict(type='SAMBackend', arch='vit_b', checkpoint=None))
