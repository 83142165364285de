"""bhvit.device: run compiled BHViT artifacts on the Raspberry Pi 5 (or any Linux host).

Needs only the ``device`` extra: NumPy, Pillow and TVM's runtime library (through ``tvm_ffi``) or onnxruntime;
never torch, timm or the TVM compiler. Modules: ``artifact`` (the compile/device contract), ``weights``,
``runtime``, ``preprocess``, ``sources``, ``classify``, ``metrics``, ``host``, ``log``, ``signals``, ``cli``.
"""
