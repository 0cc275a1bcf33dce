_base_ = [
    '../_base_/sam/sam_vit-b.py', '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py'
]
# PerSAM-F: 2 scalars fusing SAM's 3 masks, fitted on the reference (1000 AdamW steps).
model = dict(head=dict(type='PerSAMFHead', iters=1000, lr=1e-3, num_refinements=2))
