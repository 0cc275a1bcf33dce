_base_ = ['./matcher_litemedsam_dinov2-l_mni152-wm.py']
# Random tiny SAM and tiny DINOv2 (patch 14, 2 blocks): the Matcher pipeline end to end for
# tests and CI; its Dice is whatever random weights give. To fit a CPU budget it samples from
# 6 k-means centres (C(6,4)+C(6,5)+C(6,6) = 22 prompt sets instead of 154) on a 16x16 patch
# grid (224 px); everything else is the one-object preset.
model = dict(
    sam=dict(arch='tiny', seed=0),
    head=dict(prompt_sampler=dict(num_centers=6,
                                  encoder=dict(arch='tiny', img_size=224))))
