# MedSAM ViT-B (SAM ViT-B fine-tuned on medical images; same keys). Its weights have no stable
# public URL: pass the file with --checkpoint /path/to/medsam_vit_b.pth.
model = dict(
    type='OneShotSAMSegmentor',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False),
    sam=dict(type='SAMBackend', arch='medsam_vit_b', checkpoint=None),
)
