# MedSAM ViT-B: pass its weights with --checkpoint /path/to/medsam_vit_b.pth (no public URL).
_base_ = [
    '../_base_/models/medpersam.py',
    '../_base_/sam/medsam_vit-b.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}})
