"""Our ViT attention kernels behind one varlen contract:

    fn(q, k, v, cu_seqlens, max_seqlen, softmax_scale=None) -> out
    q [total_tokens, Hq, D], k/v [total_tokens, Hkv, D] (Hq % Hkv == 0), cu_seqlens int32 [batch+1]

Cheap to import: triton is imported, CUDA is not initialised.
"""

from vit_backend_plugin.kernels.auto import vit_auto_attention
from vit_backend_plugin.kernels.sdpa_cudnn import sdpa_cudnn_attention
from vit_backend_plugin.kernels.triton_vit import vit_attention

# Canonical backend names (the resolver's) -> kernel.
KERNELS = {
    "VIT_TRITON": vit_attention,
    "TORCH_SDPA_CUDNN": sdpa_cudnn_attention,
    "VIT_AUTO": vit_auto_attention,
}

__all__ = ["KERNELS", "sdpa_cudnn_attention", "vit_attention", "vit_auto_attention"]
