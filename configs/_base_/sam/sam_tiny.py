# A tiny random-weight SAM (2-block encoder, SAM's real prompt encoder and mask decoder, seeded):
# the same interfaces as ViT-B in a fraction of a second per image. For tests and CI: its Dice
# is whatever random weights give.
model = dict(
    type='OneShotSAMSegmentor',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False),
    sam=dict(type='SAMBackend', arch='tiny', checkpoint=None, seed=0),
)
