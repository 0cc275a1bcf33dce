# Random tiny SAM: the pipeline end to end for tests and CI (its Dice means nothing).
_base_ = [
    '../_base_/models/persam-f.py',
    '../_base_/sam/sam_tiny.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}})
