"""Our ViT attention kernels (one module each: ``triton_vit``, ``sdpa_cudnn``, ``auto``, and
``third_party``'s adapters) and the registry that loads them by backend name
(:mod:`vit_backend_plugin.kernels.registry`). Importing this package imports nothing else."""
