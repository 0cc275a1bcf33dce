# SAM ViT-L (segment_anything weights; downloaded once from Meta's public URL when
# checkpoint is None, or taken from --checkpoint PATH_OR_URL).
# A leaf lists this file among its bases and sets model = dict(sam={{_base_.sam}}).
sam = dict(type='SAMBackend', arch='vit_l', checkpoint=None)
