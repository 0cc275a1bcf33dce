# MedSAM ViT-B (SAM ViT-B fine-tuned on medical images; same keys). Its weights have no stable
# public URL: pass the file with --checkpoint /path/to/medsam_vit_b.pth.
_base_ = ['../models/one_shot_sam.py']
model = dict(sam=dict(type='SAMBackend', arch='medsam_vit_b', checkpoint=None))
