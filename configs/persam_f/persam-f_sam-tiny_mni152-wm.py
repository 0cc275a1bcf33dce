_base_ = [
    '../_base_/sam/sam_tiny.py', '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py'
]
model = dict(head=dict(type='PerSAMFHead', iters=1000, lr=1e-3, num_refinements=2))
