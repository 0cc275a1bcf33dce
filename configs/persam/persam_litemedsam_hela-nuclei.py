_base_ = [
    '../_base_/models/persam.py',
    '../_base_/sam/litemedsam.py',
    '../_base_/datasets/hela_nuclei.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}})
