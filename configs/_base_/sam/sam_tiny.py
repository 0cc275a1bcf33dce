# A tiny random-weight SAM (2-block encoder, SAM's real prompt encoder and mask decoder,
# seeded): the same interfaces in a fraction of a second per image. For tests and CI: its Dice
# is whatever random weights give.
_base_ = ['../models/one_shot_sam.py']
model = dict(sam=dict(type='SAMBackend', arch='tiny', checkpoint=None, seed=0))
