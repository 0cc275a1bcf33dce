_base_ = [
    '../_base_/models/warp_only.py',
    '../_base_/datasets/hela_nuclei.py',
    '../_base_/default_runtime.py',
]
