# Random tiny SAM and tiny DINOv2 (patch 14, 2 blocks): the Matcher pipeline end to end for
# tests and CI; its Dice is whatever random weights give. To fit a CPU budget it samples from
# 6 k-means centres (C(6,4)+C(6,5)+C(6,6) = 22 prompt sets instead of 154) on a 16x16 patch
# grid (224 px); everything else is the one-object preset.
_base_ = [
    '../_base_/models/matcher.py',
    '../_base_/sam/sam_tiny.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}},
             head=dict(prompt_sampler=dict(num_centers=6,
                                           encoder=dict(arch='tiny', img_size=224))))
