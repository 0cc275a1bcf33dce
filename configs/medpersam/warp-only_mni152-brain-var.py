_base_ = [
    '../_base_/models/warp_only.py',
    '../_base_/datasets/mni152_brain-var.py',
    '../_base_/default_runtime.py',
]
