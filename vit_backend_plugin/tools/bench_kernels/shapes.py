"""The benchmark's shapes: the default and extended sets, ``--shapes`` specs, per-sequence
length buckets of the speed table."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Default shapes (the issue's table): name, head_dim, per-sequence lengths; 16 heads, bf16.
DEFAULT_SHAPES: list[tuple[str, int, list[int]]] = [
    ("SigLIP d72, 32 x 729", 72, [729] * 32),
    ("InternViT d64, 32 x 1025", 64, [1025] * 32),
    ("Qwen2.5-VL d80, 16 x 1024", 80, [1024] * 16),
    ("Qwen2.5-VL d80, 4 x 4096", 80, [4096] * 4),
    ("Qwen2.5-VL d80, 1 x 16384", 80, [16384]),
    ("Qwen2.5-VL window d80, 256 x 64", 80, [64] * 256),
    ("mixed lengths d80", 80, [256, 1024, 4096, 729, 64, 2304, 576, 1600]),
    ("d128, 8 x 2048", 128, [2048] * 8),
]
# Shapes beyond the issue's table (issue 11): other head sizes and head counts, odd lengths,
# many short sequences (thumbnails, video frames), windows with ragged tails, fp16.
EXTENDED_SHAPES: list[tuple[str, int, list[int], int, str]] = [
    ("CLIP-L/14-336 d64, 32 x 577", 64, [577] * 32, 16, "bfloat16"),
    ("CLIP-B/16 d64 @12, 64 x 197", 64, [197] * 64, 12, "bfloat16"),
    ("thumbnails d80, 128 x 256", 80, [256] * 128, 16, "bfloat16"),
    ("video frames d72, 64 x 256", 72, [256] * 64, 16, "bfloat16"),
    ("windows ragged d80, 230 x 64 + tails", 80, [64] * 230 + [32] * 12 + [16] * 6 + [8, 40], 16, "bfloat16"),
    ("odd lengths d80", 80, [997, 1531, 263, 4099, 577, 1], 16, "bfloat16"),
    ("mixed d72", 72, [729, 256, 1024, 64, 576, 1369], 16, "bfloat16"),
    ("Llama-4 d88, 16 x 577", 88, [577] * 16, 16, "bfloat16"),
    ("d96, 16 x 1024", 96, [1024] * 16, 16, "bfloat16"),
    ("d128 @12, 16 x 1024", 128, [1024] * 16, 12, "bfloat16"),
    ("d128 mixed", 128, [2048, 512, 1024, 4096, 300], 16, "bfloat16"),
    ("fp16 SigLIP d72, 32 x 729", 72, [729] * 32, 16, "float16"),
    ("fp16 d80, 16 x 1024", 80, [1024] * 16, 16, "float16"),
    ("fp16 window d80, 256 x 64", 80, [64] * 256, 16, "float16"),
]
# Issue 3's reference numbers (H100, TFLOP/s): flash / cuDNN / stock vLLM triton, for context.
ISSUE_REFERENCE = {
    "SigLIP d72, 32 x 729": (185, 273, 30),
    "InternViT d64, 32 x 1025": (232, 319, 166),
    "Qwen2.5-VL d80, 16 x 1024": (239, 380, 153),
    "Qwen2.5-VL d80, 4 x 4096": (263, 421, 178),
    "Qwen2.5-VL d80, 1 x 16384": (274, 420, 191),
    "Qwen2.5-VL window d80, 256 x 64": (49, 57, 28),
    "mixed lengths d80": (194, 208, 164),
    "d128, 8 x 2048": (344, 605, 246),
}
# Per-sequence length buckets of the speed table (inclusive): windows/thumbnails, one image
# at ViT resolution, large images, very large images / video.
SEQ_BUCKETS: list[tuple[int, int]] = [(1, 128), (129, 1024), (1025, 4096), (4097, 1_000_000)]


@dataclass
class Shape:
    name: str
    head_dim: int
    lens: list[int]
    heads: int = 16
    kv_heads: int = 16
    dtype: str = ""  # "" = the run's --dtype

    @property
    def flops(self) -> float:
        return sum(4.0 * s * s * self.head_dim * self.heads for s in self.lens)

    @property
    def equal(self) -> bool:
        return len(set(self.lens)) == 1


def parse_shape(spec: str) -> Shape:
    """'[name=]D:BxS[@H[/Hkv]]' or '[name=]D:l1,l2,...[@H[/Hkv]]', e.g. 'd80:16x1024', '80:64,729@16'."""
    name, _, body = spec.rpartition("=")
    m = re.fullmatch(r"d?(\d+):([\dx,]+)(?:@(\d+)(?:/(\d+))?)?", body.strip())
    if not m:
        raise ValueError(f"bad shape {spec!r}; want D:BxS or D:l1,l2,.. (optionally @heads[/kv_heads])")
    d, lens_s, h, hkv = m.groups()
    if "x" in lens_s:
        b, s = lens_s.split("x")
        lens = [int(s)] * int(b)
    else:
        lens = [int(x) for x in lens_s.split(",") if x]
    h = int(h or 16)
    return Shape(name or f"d{d}:{lens_s}@{h}", int(d), lens, h, int(hkv or h))


def seq_bucket(lens: list[int]) -> tuple[int, int]:
    lo = next(b for b in SEQ_BUCKETS if b[0] <= min(lens) <= b[1])[0]
    hi = next(b for b in SEQ_BUCKETS if b[0] <= max(lens) <= b[1])[1]
    return lo, hi


def default_shapes(shape_set: str) -> list[Shape]:
    out = []
    if shape_set in ("issue", "all"):
        out += [Shape(n, d, lens) for n, d, lens in DEFAULT_SHAPES]
    if shape_set in ("extended", "all"):
        out += [Shape(n, d, lens, h, h, dt) for n, d, lens, h, dt in EXTENDED_SHAPES]
    return out
