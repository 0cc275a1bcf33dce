_base_ = [
    '../_base_/sam/sam_vit-b.py', '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py'
]
model = dict(head=dict(type='PerSAMHead', num_refinements=2))
