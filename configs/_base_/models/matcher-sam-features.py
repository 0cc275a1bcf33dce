# NOT Matcher: Matcher's pipeline (bidirectional Hungarian patch matching, k-means robust prompt
# sampler, EMD/purity/coverage instance scoring, union of the best masks; its one-object preset)
# on the SAM encoder's own features instead of DINOv2's, whose weights are on no registry these
# machines reach. Tables name it "Matcher pipeline, SAM-encoder features".
_base_ = ['./matcher.py']
model = dict(head=dict(prompt_sampler=dict(encoder=dict(_delete_=True, type='SAMFeatureEncoder',
                                                        grid=64))))
