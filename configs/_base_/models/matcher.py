# Matcher (Liu et al., ICLR 2024) with DINOv2 ViT-L/14 at 518 px, one-object FSS-1000 preset.
# DINOv2 weights are never downloaded: pass the official file, e.g.
#   --cfg-options model.head.prompt_sampler.encoder.checkpoint=/path/to/dinov2_vitl14_pretrain.pth
_base_ = ['./one_shot_sam.py']
model = dict(
    head=dict(
        type='MatcherHead',
        prompt_sampler=dict(
            type='MatcherPromptSampler',
            encoder=dict(type='DINOv2Encoder', arch='vit_l14', img_size=518, checkpoint=None),
            num_centers=8, sample_range=(4, 6), max_sample_iterations=30),
        multimask_output=False,
        score=dict(alpha=0.8, beta=0.2, exp=1.0, num_merging_mask=10,
                   topk_scores_threshold=0.7)))
