_base_ = [
    '../_base_/models/warp_only.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
