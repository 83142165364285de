"""bhvit.device: run compiled BHViT artifacts on the Raspberry Pi 5 (or any Linux host).

Needs only the ``device`` extra: NumPy, Pillow and the TVM runtime (runtime-only mode) or onnxruntime;
never torch, timm or the TVM compiler. Modules: ``artifact`` (the compile/device contract), ``runtime``,
``preprocess``, ``sources``, ``classify``, ``metrics``, ``host``, ``log``, ``signals``, ``cli``.
"""
