_base_ = [
    '../_base_/models/matcher-sam-features.py',
    '../_base_/sam/litemedsam.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}})
