# SAM ViT-B (segment_anything weights; downloaded once from Meta's public URL when
# checkpoint is None, or taken from --checkpoint PATH_OR_URL).
# A leaf lists this file among its bases and sets model = dict(sam={{_base_.sam}}).
sam = dict(type='SAMBackend', arch='vit_b', checkpoint=None)
