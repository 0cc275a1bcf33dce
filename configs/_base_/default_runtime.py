# Runtime shared by every one-shot config: registers the plugin, runs the one-shot test loop.
default_scope = 'mmseg'
custom_imports = dict(imports=['mmseg_medpersam'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    # mmseg's tools/test.py --show-dir sets draw=True: every target is drawn.
    visualization=dict(type='OneShotVisualizationHook', draw=False),
)
test_cfg = dict(type='OneShotTestLoop')
# Several processes (tools/dist_test.sh): each runs its own copy, no gradient sync.
model_wrapper_cfg = dict(type='OneShotInferenceWrapper')
