# SAM ViT-H (segment_anything weights: Meta's URL on first use, or --checkpoint PATH_OR_URL).
_base_ = [
    '../_base_/models/medpersam.py',
    '../_base_/sam/sam_vit-h.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}})
