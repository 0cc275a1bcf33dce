# MedSAM ViT-B (SAM ViT-B fine-tuned on medical images; same keys). Its weights have no stable
# public URL: pass the file with --checkpoint /path/to/medsam_vit_b.pth.
# A leaf lists this file among its bases and sets model = dict(sam={{_base_.sam}}).
sam = dict(type='SAMBackend', arch='medsam_vit_b', checkpoint=None)
