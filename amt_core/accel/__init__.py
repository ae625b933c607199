"""Acceleration: what the hardware can run, measured choices cached on disk, and the training transforms that use them.

`probe` (what this machine has) and `measured` (one on-disk cache of measurements, one key, one CUDA timer) import
nothing of amt_core but `errors` and `paths`, so the attention layer in `amt_core.models` may ask the probe which
kernels can run; everything else here sits above `amt_core.models` and below `amt_core.train`: the attention
autotuner (`attention`), `precision`, FP8 conversion (`fp8`), its measured size threshold (`fp8_threshold`) and its
state in checkpoints (`fp8_state`), and the activation-checkpointing policies (`recompute`: which activations are
recomputed in the backward pass).
"""
