# A tiny random-weight SAM (2-block encoder, SAM's real prompt encoder and mask decoder,
# seeded): the same interfaces in a fraction of a second per image. For tests and CI: its Dice
# is whatever random weights give.
# A leaf lists this file among its bases and sets model = dict(sam={{_base_.sam}}).
sam = dict(type='SAMBackend', arch='tiny', checkpoint=None, seed=0)
