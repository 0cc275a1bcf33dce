_base_ = ['./persam-f_litemedsam_mni152-wm.py']
# SAM ViT-B (segment_anything weights: Meta's URL on first use, or --checkpoint PATH_OR_URL).
model = dict(sam=dict(arch='vit_b'))
