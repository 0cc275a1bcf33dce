# PerSAM-F: PerSAM + 2 scalars fusing SAM's 3 masks, fitted on the reference (1000 AdamW
# steps on cached logits). Default SAM: LiteMedSAM.
_base_ = ['../sam/litemedsam.py']
model = dict(head=dict(type='PerSAMFHead', iters=1000, lr=1e-3, num_refinements=2))
