# SAM VIT-L (segment_anything weights; downloaded once from Meta's public URL when
# checkpoint is None, or taken from --checkpoint PATH_OR_URL).
model = dict(
    type='OneShotSAMSegmentor',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False),
    sam=dict(type='SAMBackend', arch='vit_l', checkpoint=None),
)
