"""The inputs of one shape: several sets, laid out as in Qwen2.5-VL's vision blocks."""

from __future__ import annotations

import math

from vit_backend_plugin.tools.bench_kernels.shapes import Shape


def _make_inputs(torch, shape: Shape, dtype, n_sets: int):
    cu_list = [0]
    for s in shape.lens:
        cu_list.append(cu_list[-1] + s)
    total = cu_list[-1]
    cu = torch.tensor(cu_list, dtype=torch.int32, device="cuda")
    sets = []
    for _ in range(n_sets):
        # As in Qwen2.5-VL's blocks: q, k contiguous (RoPE output), v = qkv[:, 2] (strided view).
        packed = torch.randn(total, 3, shape.kv_heads, shape.head_dim, dtype=dtype, device="cuda")
        sets.append({
            "q": torch.randn(total, shape.heads, shape.head_dim, dtype=dtype, device="cuda"),
            "k": torch.randn(total, shape.kv_heads, shape.head_dim, dtype=dtype, device="cuda"),
            "v": packed[:, 2],
            "cu": cu, "max": max(shape.lens), "lens": shape.lens,
        })
    return sets


def n_input_sets(shape: Shape, dtype) -> int:
    """How many input sets to rotate: together more than 4x the H100's 50 MB L2 (2 to 8)."""
    bytes_per_set = 4 * sum(shape.lens) * shape.heads * shape.head_dim * dtype.itemsize
    return max(2, min(8, math.ceil(200e6 / bytes_per_set)))  # rotate > 4x the 50 MB L2
