"""VIT_TRITON: varlen, non-causal flash-attention forward for ViT encoders, in Triton.

Layout: q [total_tokens, Hq, D], k/v [total_tokens, Hkv, D] (Hq % Hkv == 0: GQA), cu_seqlens
int32 [batch + 1]; one launch for the whole batch. Design notes (numbers in reports/kernels/NOTES.md):

* Head dim split. D is covered by a power-of-two chunk D0 plus, when needed, a second chunk D1
  (>= 16, the smallest tl.dot K/N), e.g. 72 -> 64+16, 80 -> 64+16, 96 -> 64+32, instead of padding
  to the next power of two (72 -> 128 wastes 44% of every matrix op). Only the D1 chunk is masked.
* Vectorised loads at odd head strides. Triton only assumes 16-element divisibility for integer
  args that actually are multiples of 16, so a head stride of 72 would make every pointer look
  2-byte aligned and kill 16-byte loads. The host computes the largest power of two that divides
  every stride (STRIDE_ALIGN, capped at 16) and passes stride // STRIDE_ALIGN; the kernel
  multiplies back by the constexpr, which the compiler's alignment analysis can see
  (tl.multiple_of on a bare argument is dropped: checked in the PTX, see NOTES.md).
* Full key blocks run unmasked; only one block per sequence (the partial one) pays for masking.
* Short sequences (e.g. Qwen2.5-VL's 64-token windows) take a packed path: one program handles
  PACK sequences of one head in a pipelined loop, one tile each (no online softmax needed).
* Block shapes, warps, stages and the K/V cache modifier come from kernels/configs.json, keyed
  by head_dim and max_seqlen buckets (data, re-tunable: see reports/kernels/NOTES.md); the
  table's loading and lookup live in :mod:`vit_backend_plugin.kernels.triton_configs`.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from vit_backend_plugin.kernels._validate import check_inputs

# The launch-config table and its lookup; load_configs / pick_config are also this module's API
# (the tuner and tests import them from here; _table_plan reads load_configs through this name).
from vit_backend_plugin.kernels.triton_configs import _pick_from, load_configs, pick_config  # noqa: F401

LOG2E = 1.4426950408889634


def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _mm(a, b, acc, prec: tl.constexpr, UPCAST: tl.constexpr):
    # UPCAST: the Triton interpreter (3.7) multiplies bf16 tiles wrongly; run them as fp32 there.
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=prec)


@triton.jit
def _attn_rows(
    Q, K, V, Out, qk_scale, seq_start, seqlen, m0, pid_h, kv_h,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CACHE_KV: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
):
    """Rows [m0, m0 + BLOCK_M) of one (sequence, head): flash loop over its key blocks."""
    row0 = (seq_start + m0).to(tl.int64)
    kv0 = seq_start.to(tl.int64)

    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d0 = tl.arange(0, D0)
    m_ok = offs_m < seqlen - m0

    q_base = Q + row0 * stride_qt + pid_h * stride_qh
    k_base = K + kv0 * stride_kt + kv_h * stride_kh
    v_base = V + kv0 * stride_vt + kv_h * stride_vh
    # K is loaded as [D, BLOCK_N] (K^T), V as [BLOCK_N, D].
    d0_ok = offs_d0 < HEAD_DIM  # all true unless D0 is padded (no split)
    q0 = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d0[None, :],
                 mask=m_ok[:, None] & d0_ok[None, :], other=0.0)
    k0_ptrs = k_base + offs_n[None, :] * stride_kt + offs_d0[:, None]
    v0_ptrs = v_base + offs_n[:, None] * stride_vt + offs_d0[None, :]
    if D1 > 0:
        offs_d1 = D0 + tl.arange(0, D1)
        d1_ok = offs_d1 < HEAD_DIM
        q1 = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d1[None, :],
                     mask=m_ok[:, None] & d1_ok[None, :], other=0.0)
        k1_ptrs = k_base + offs_n[None, :] * stride_kt + offs_d1[:, None]
        v1_ptrs = v_base + offs_n[:, None] * stride_vt + offs_d1[None, :]
    prec: tl.constexpr = "ieee" if IEEE else "tf32"

    # One masked block first, then unmasked full blocks; no runtime `if` around the dots (a
    # masked tail block under `if` miscompiled with the head-dim split on Triton 3.6, NOTES.md).
    # With a partial block (rem > 0) it is the masked one; otherwise block 0 is (all valid).
    n_full = (seqlen // BLOCK_N) * BLOCK_N
    rem = seqlen - n_full
    first = tl.where(rem > 0, n_full, 0)
    n_valid = tl.where(rem > 0, rem, BLOCK_N)
    lo = tl.where(rem > 0, 0, BLOCK_N)
    hi = tl.where(rem > 0, n_full, seqlen)

    n_ok = offs_n < n_valid
    kt_off = first * stride_kt
    vt_off = first * stride_vt
    k0 = tl.load(k0_ptrs + kt_off, mask=n_ok[None, :] & d0_ok[:, None], other=0.0, cache_modifier=CACHE_KV)
    qk = _mm(q0, k0, None, prec, UPCAST)
    if D1 > 0:
        k1 = tl.load(k1_ptrs + kt_off, mask=n_ok[None, :] & d1_ok[:, None], other=0.0,
                     cache_modifier=CACHE_KV)
        qk = _mm(q1, k1, qk, prec, UPCAST)
    qk = tl.where(n_ok[None, :], qk * qk_scale, float("-inf"))
    m_i = tl.max(qk, 1)
    p = tl.math.exp2(qk - m_i[:, None])
    l_i = tl.sum(p, 1)
    v0 = tl.load(v0_ptrs + vt_off, mask=n_ok[:, None] & d0_ok[None, :], other=0.0, cache_modifier=CACHE_KV)
    acc0 = _mm(p.to(v0.dtype), v0, None, prec, UPCAST)
    if D1 > 0:
        v1 = tl.load(v1_ptrs + vt_off, mask=n_ok[:, None] & d1_ok[None, :], other=0.0,
                     cache_modifier=CACHE_KV)
        acc1 = _mm(p.to(v1.dtype), v1, None, prec, UPCAST)

    for start_n in range(lo, hi, BLOCK_N):  # full key blocks: no masks at all
        kt_off = start_n * stride_kt
        vt_off = start_n * stride_vt
        if D0 > HEAD_DIM:
            k0 = tl.load(k0_ptrs + kt_off, mask=d0_ok[:, None], other=0.0, cache_modifier=CACHE_KV)
        else:
            k0 = tl.load(k0_ptrs + kt_off, cache_modifier=CACHE_KV)
        qk = _mm(q0, k0, None, prec, UPCAST)
        if D1 > 0:
            k1 = tl.load(k1_ptrs + kt_off, mask=d1_ok[:, None], other=0.0, cache_modifier=CACHE_KV)
            qk = _mm(q1, k1, qk, prec, UPCAST)
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new
        if D0 > HEAD_DIM:
            v0 = tl.load(v0_ptrs + vt_off, mask=d0_ok[None, :], other=0.0, cache_modifier=CACHE_KV)
        else:
            v0 = tl.load(v0_ptrs + vt_off, cache_modifier=CACHE_KV)
        acc0 = _mm(p.to(v0.dtype), v0, acc0 * alpha[:, None], prec, UPCAST)
        if D1 > 0:
            v1 = tl.load(v1_ptrs + vt_off, mask=d1_ok[None, :], other=0.0, cache_modifier=CACHE_KV)
            acc1 = _mm(p.to(v1.dtype), v1, acc1 * alpha[:, None], prec, UPCAST)

    inv_l = 1.0 / l_i
    o_base = Out + row0 * stride_ot + pid_h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d0[None, :],
             (acc0 * inv_l[:, None]).to(Out.dtype.element_ty), mask=m_ok[:, None] & d0_ok[None, :])
    if D1 > 0:
        tl.store(o_base + offs_m[:, None] * stride_ot + offs_d1[None, :],
                 (acc1 * inv_l[:, None]).to(Out.dtype.element_ty), mask=m_ok[:, None] & d1_ok[None, :])




@triton.jit
def _attn_fwd_main(
    Q, K, V, Out, CU, qk_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, STRIDE_ALIGN: tl.constexpr, OFF64: tl.constexpr,
    ROW_LOOP: tl.constexpr, CACHE_KV: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)  # fastest: the m-blocks of one (seq, head) share K/V in L2
    pid_b = tl.program_id(1)
    pid_h = tl.program_id(2)
    seq_start = tl.load(CU + pid_b)
    seqlen = tl.load(CU + pid_b + 1) - seq_start
    # Strides arrive divided by STRIDE_ALIGN; multiplying by the constexpr tells the compiler
    # their divisibility (tl.multiple_of on a bare kernel argument is silently dropped).
    # OFF64: some element offset reaches 2**31, so all offset math runs in 64 bits.
    if OFF64:
        stride_qt = tl.cast(stride_qt, tl.int64)
        stride_qh = tl.cast(stride_qh, tl.int64)
        stride_kt = tl.cast(stride_kt, tl.int64)
        stride_kh = tl.cast(stride_kh, tl.int64)
        stride_vt = tl.cast(stride_vt, tl.int64)
        stride_vh = tl.cast(stride_vh, tl.int64)
        stride_ot = tl.cast(stride_ot, tl.int64)
        stride_oh = tl.cast(stride_oh, tl.int64)
    stride_qt = stride_qt * STRIDE_ALIGN
    stride_qh = stride_qh * STRIDE_ALIGN
    stride_kt = stride_kt * STRIDE_ALIGN
    stride_kh = stride_kh * STRIDE_ALIGN
    stride_vt = stride_vt * STRIDE_ALIGN
    stride_vh = stride_vh * STRIDE_ALIGN
    stride_ot = stride_ot * STRIDE_ALIGN
    stride_oh = stride_oh * STRIDE_ALIGN
    kv_h = pid_h // GROUP
    if ROW_LOOP:
        # Grid-stride over m-blocks: every row is written even when the caller's max_seqlen is
        # smaller than the longest sequence (an untrusted max_seqlen).
        for m0 in range(pid_m * BLOCK_M, seqlen, tl.num_programs(0) * BLOCK_M):
            _attn_rows(Q, K, V, Out, qk_scale, seq_start, seqlen, m0, pid_h, kv_h,
                       stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
                       stride_ot, stride_oh, HEAD_DIM, D0, D1, BLOCK_M, BLOCK_N, CACHE_KV, IEEE, UPCAST)
    else:
        # max_seqlen computed on the host from the same lengths (vLLM's models do): one m-block
        # per program, no loop around the flash loop (the fast path; a loop there cost 10-15%).
        m0 = pid_m * BLOCK_M
        if m0 >= seqlen:
            return
        _attn_rows(Q, K, V, Out, qk_scale, seq_start, seqlen, m0, pid_h, kv_h,
                   stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
                   stride_ot, stride_oh, HEAD_DIM, D0, D1, BLOCK_M, BLOCK_N, CACHE_KV, IEEE, UPCAST)


@triton.jit
def _attn_fwd_packed(
    Q, K, V, Out, CU, qk_scale, batch,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
    BLOCK: tl.constexpr, PACK: tl.constexpr, STRIDE_ALIGN: tl.constexpr, OFF64: tl.constexpr,
    ROW_LOOP: tl.constexpr, CACHE_KV: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
):
    """Sequences no longer than BLOCK: PACK of them per program (one head), one tile each. The
    loop over sequences is software-pipelined, so the next window's loads overlap this one's math."""
    pid_p = tl.program_id(0)
    pid_h = tl.program_id(1)
    # Strides arrive divided by STRIDE_ALIGN; multiplying by the constexpr tells the compiler
    # their divisibility (tl.multiple_of on a bare kernel argument is silently dropped).
    if OFF64:
        stride_qt = tl.cast(stride_qt, tl.int64)
        stride_qh = tl.cast(stride_qh, tl.int64)
        stride_kt = tl.cast(stride_kt, tl.int64)
        stride_kh = tl.cast(stride_kh, tl.int64)
        stride_vt = tl.cast(stride_vt, tl.int64)
        stride_vh = tl.cast(stride_vh, tl.int64)
        stride_ot = tl.cast(stride_ot, tl.int64)
        stride_oh = tl.cast(stride_oh, tl.int64)
    stride_qt = stride_qt * STRIDE_ALIGN
    stride_qh = stride_qh * STRIDE_ALIGN
    stride_kt = stride_kt * STRIDE_ALIGN
    stride_kh = stride_kh * STRIDE_ALIGN
    stride_vt = stride_vt * STRIDE_ALIGN
    stride_vh = stride_vh * STRIDE_ALIGN
    stride_ot = stride_ot * STRIDE_ALIGN
    stride_oh = stride_oh * STRIDE_ALIGN
    kv_h = pid_h // GROUP
    prec: tl.constexpr = "ieee" if IEEE else "tf32"
    offs = tl.arange(0, BLOCK)
    offs_d0 = tl.arange(0, D0)
    d0_ok = offs_d0 < HEAD_DIM
    if D1 > 0:
        offs_d1 = D0 + tl.arange(0, D1)
        d1_ok = offs_d1 < HEAD_DIM
    for i in range(PACK):
        b = pid_p * PACK + i
        b_ok = b < batch
        b = tl.minimum(b, batch - 1)
        start = tl.load(CU + b)
        seqlen = tl.where(b_ok, tl.load(CU + b + 1) - start, 0)
        start = start.to(tl.int64)
        if ROW_LOOP:
            # Longer than one tile (the caller's max_seqlen was too small): skip the one-tile
            # path and run the flash loop below, so no row is left unwritten.
            big = seqlen > BLOCK
            r_ok = offs < tl.where(big, 0, seqlen)
        else:  # trusted max_seqlen: no nested loop, so the loop over sequences stays pipelined
            r_ok = offs < seqlen
        q_base = Q + start * stride_qt + pid_h * stride_qh
        k_base = K + start * stride_kt + kv_h * stride_kh
        v_base = V + start * stride_vt + kv_h * stride_vh
        q0 = tl.load(q_base + offs[:, None] * stride_qt + offs_d0[None, :],
                     mask=r_ok[:, None] & d0_ok[None, :], other=0.0)
        k0 = tl.load(k_base + offs[None, :] * stride_kt + offs_d0[:, None],
                     mask=r_ok[None, :] & d0_ok[:, None], other=0.0, cache_modifier=CACHE_KV)
        qk = _mm(q0, k0, None, prec, UPCAST)
        if D1 > 0:
            q1 = tl.load(q_base + offs[:, None] * stride_qt + offs_d1[None, :],
                         mask=r_ok[:, None] & d1_ok[None, :], other=0.0)
            k1 = tl.load(k_base + offs[None, :] * stride_kt + offs_d1[:, None],
                         mask=r_ok[None, :] & d1_ok[:, None], other=0.0, cache_modifier=CACHE_KV)
            qk = _mm(q1, k1, qk, prec, UPCAST)
        qk = tl.where(r_ok[None, :], qk * qk_scale, float("-inf"))
        m = tl.maximum(tl.max(qk, 1), -1.0e30)  # rows past seqlen: finite, never stored
        p = tl.math.exp2(qk - m[:, None])
        inv_l = 1.0 / tl.maximum(tl.sum(p, 1), 1.0e-30)
        o_base = Out + start * stride_ot + pid_h * stride_oh
        v0 = tl.load(v_base + offs[:, None] * stride_vt + offs_d0[None, :],
                     mask=r_ok[:, None] & d0_ok[None, :], other=0.0, cache_modifier=CACHE_KV)
        o0 = _mm(p.to(v0.dtype), v0, None, prec, UPCAST) * inv_l[:, None]
        tl.store(o_base + offs[:, None] * stride_ot + offs_d0[None, :], o0.to(Out.dtype.element_ty),
                 mask=r_ok[:, None] & d0_ok[None, :])
        if D1 > 0:
            v1 = tl.load(v_base + offs[:, None] * stride_vt + offs_d1[None, :],
                         mask=r_ok[:, None] & d1_ok[None, :], other=0.0, cache_modifier=CACHE_KV)
            o1 = _mm(p.to(v1.dtype), v1, None, prec, UPCAST) * inv_l[:, None]
            tl.store(o_base + offs[:, None] * stride_ot + offs_d1[None, :], o1.to(Out.dtype.element_ty),
                     mask=r_ok[:, None] & d1_ok[None, :])
        if ROW_LOOP:
            for m0 in range(0, tl.where(big, seqlen, 0), BLOCK):
                _attn_rows(Q, K, V, Out, qk_scale, start, seqlen, m0, pid_h, kv_h,
                           stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
                           stride_ot, stride_oh, HEAD_DIM, D0, D1, BLOCK, BLOCK, CACHE_KV, IEEE,
                           UPCAST)


# ---------------------------------------------------------------- host side


def split_head_dim(head_dim: int, min_d1: int = 16) -> tuple[int, int]:
    """(D0, D1): D0 the largest power of two <= head_dim; D1 covers the rest (0, or a power of
    two >= min_d1). 64 -> (64, 0), 72 -> (64, 16), 80 -> (64, 16), 96 -> (64, 32), 200 -> (128, 128).
    min_d1 >= D0 means no split: one chunk padded to the next power of two."""
    d0 = 1 << (head_dim.bit_length() - 1)
    rest = head_dim - d0
    if rest and min_d1 >= d0:
        return triton.next_power_of_2(head_dim), 0
    d1 = 0 if rest == 0 else max(min_d1, triton.next_power_of_2(rest))
    return d0, d1


def _stride_align_of(strides: tuple[tuple[int, ...], ...]) -> int:
    """Largest power of two (<= 16) dividing every token/head stride: what tl.multiple_of may claim."""
    g = 0
    for st in strides:
        g = math.gcd(g, st[0], st[1])
    g = g or 16
    return math.gcd(g, 16)


def _needs_64bit_offsets(*tensors: torch.Tensor) -> bool:
    """Whether some element offset (from the tensor's start) reaches 2**31: int32 math would wrap."""
    return _needs_64bit_offsets_of(tuple((t.shape, t.stride()) for t in tensors))


def _needs_64bit_offsets_of(layouts: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]) -> bool:
    """(shape, stride) pairs; an empty tensor has no offsets."""
    return any(sum((n - 1) * st for n, st in zip(shape, stride, strict=True)) >= 2**31 - 1
               for shape, stride in layouts if math.prod(shape))


def vit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen,
    softmax_scale: float | None = None,
    *,
    out: torch.Tensor | None = None,
    config: dict | None = None,
    max_seqlen_exact: bool = False,
    capturing: bool | None = None,
) -> torch.Tensor:
    """Non-causal varlen attention. Returns out [total_tokens, Hq, D] (q's dtype).

    ``max_seqlen_exact=True``: the caller computed max_seqlen on the host from these lengths (as
    vLLM's models do; the plugin's op passes it): the kernels skip the loops that cover a too-small
    max_seqlen (10-15% faster on the H100; a too-small value then leaves rows unwritten).

    q/k/v may be strided views (e.g. of a packed qkv tensor) with head_dim contiguous.
    ``max_seqlen`` 0 means "derive it from cu_seqlens" (a host read). A max_seqlen smaller than
    the longest sequence is rejected where the lengths are read anyway (a CPU cu_seqlens, or
    VIT_KERNELS_DEBUG=1); otherwise the kernels still write every row correctly (it only sizes
    the launch). ``config`` overrides the table entry (used by the tuner).

    ``capturing``: whether a CUDA graph is being captured (None: asked only where a host read
    would happen). Rows past cu_seqlens[-1] (padding) are never written: pass a zeroed ``out``
    where they must be defined."""
    # A CPU cu_seqlens is checked against max_seqlen here: trusted as well, like an exact one.
    exact = max_seqlen_exact or cu_seqlens.is_cpu
    cu_seqlens, max_seqlen = check_inputs(q, k, v, cu_seqlens, max_seqlen, backend="VIT_TRITON",
                                          capturing=capturing)
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device or out.stride(-1) != 1:
        raise ValueError(f"out must match q (shape {tuple(q.shape)}, {q.dtype}, {q.device}, stride(-1)=1)")
    return _launch(q, k, v, cu_seqlens, max_seqlen, softmax_scale, out, config, row_loop=not exact)


class LaunchPlan(NamedTuple):
    """Everything a launch derives from metadata: which kernel, its grid, the scalar arguments
    after (q, k, v, out, cu_seqlens), and its constexprs plus num_warps / num_stages."""

    kernel: str  # "packed" or "main"
    grid: tuple[int, ...]
    args: tuple
    constexprs: dict  # shared by every call with this plan: never mutated


def plan_launch(layouts: tuple, dtype: torch.dtype, batch: int, max_seqlen: int,
                softmax_scale: float | None, cfg: dict, row_loop: bool, interpret: bool) -> LaunchPlan:
    """Pure: the launch for these (shape, stride) layouts of q, k, v, out (in that order)."""
    (q_shape, q_stride), (k_shape, k_stride), (_, v_stride), (_, o_stride) = layouts
    _, hq, head_dim = q_shape
    scale = (1.0 / math.sqrt(head_dim)) if softmax_scale is None else float(softmax_scale)
    d0, d1 = split_head_dim(head_dim, cfg.get("min_d1", 16))
    align = _stride_align_of((q_stride, k_stride, v_stride, o_stride))
    consts = dict(
        GROUP=hq // k_shape[1], HEAD_DIM=head_dim, D0=d0, D1=d1,
        STRIDE_ALIGN=align, OFF64=_needs_64bit_offsets_of(layouts),
        ROW_LOOP=row_loop,
        CACHE_KV=cfg.get("cache_kv", "") if not interpret else "",
        IEEE=dtype == torch.float32,
        UPCAST=interpret and dtype == torch.bfloat16,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    strides = tuple(s // align for s in (q_stride[0], q_stride[1], k_stride[0], k_stride[1],
                                         v_stride[0], v_stride[1], o_stride[0], o_stride[1]))
    qk_scale = scale * LOG2E
    if cfg.get("kernel") == "packed":
        block = max(16, triton.next_power_of_2(max_seqlen))
        if block > cfg.get("max_block", 128):
            raise ValueError(f"packed kernel config used for max_seqlen {max_seqlen} > {cfg.get('max_block', 128)}")
        pack = max(1, int(cfg.get("PACK", 1)))
        return LaunchPlan("packed", (triton.cdiv(batch, pack), hq), (qk_scale, batch, *strides),
                          dict(BLOCK=block, PACK=pack, **consts))
    block_m, block_n = cfg["BLOCK_M"], cfg["BLOCK_N"]
    if max_seqlen < block_m:  # don't run 128-row tiles over 65-token sequences
        block_m = max(16, min(block_m, triton.next_power_of_2(max_seqlen)))
    return LaunchPlan("main", (triton.cdiv(max_seqlen, block_m), batch, hq), (qk_scale, *strides),
                      dict(BLOCK_M=block_m, BLOCK_N=block_n, **consts))


# Plans from the config table, keyed by every input of plan_launch (layouts, dtype, batch,
# max_seqlen, scale, row_loop, interpreter): a ViT tower repeats a handful of shapes, and
# deriving a plan costs more host time than a short kernel runs. Emptied when load_configs
# returns another table; bounded, oldest plan out first. An explicit config (the tuner) bypasses it.
_PLANS: dict[tuple, LaunchPlan] = {}
_PLANS_TABLE: list = [None]  # the table the plans came from
_PLANS_CAP = 1024


def _table_plan(q, k, v, out, batch: int, max_seqlen: int, softmax_scale, row_loop: bool) -> LaunchPlan:
    table = load_configs()
    if table is not _PLANS_TABLE[0]:
        _PLANS.clear()
        _PLANS_TABLE[0] = table
    interpret = interpret_mode()
    layouts = ((q.shape, q.stride()), (k.shape, k.stride()), (v.shape, v.stride()),
               (out.shape, out.stride()))
    key = (layouts, q.dtype, batch, max_seqlen, softmax_scale, row_loop, interpret)
    plan = _PLANS.get(key)
    if plan is None:
        cfg = _pick_from(table, q.shape[2], max_seqlen, q.dtype)
        plan = plan_launch(layouts, q.dtype, batch, max_seqlen, softmax_scale, cfg, row_loop, interpret)
        if len(_PLANS) >= _PLANS_CAP:
            del _PLANS[next(iter(_PLANS))]
        _PLANS[key] = plan
    return plan


def _launch(q, k, v, cu_seqlens, max_seqlen: int, softmax_scale, out, config,
            row_loop: bool = True) -> torch.Tensor:
    """The launch on validated inputs (max_seqlen >= 1 only sizes the grid / tile)."""
    total, _, _ = q.shape
    batch = cu_seqlens.numel() - 1
    if total == 0 or max_seqlen == 0:
        return out
    if softmax_scale is not None:
        softmax_scale = float(softmax_scale)  # also the cache key: 0.5 and a 0.5 tensor alike
    if config is None:
        plan = _table_plan(q, k, v, out, batch, max_seqlen, softmax_scale, row_loop)
    else:
        layouts = ((q.shape, q.stride()), (k.shape, k.stride()), (v.shape, v.stride()),
                   (out.shape, out.stride()))
        plan = plan_launch(layouts, q.dtype, batch, max_seqlen, softmax_scale, dict(config), row_loop,
                           interpret_mode())
    kernel = _attn_fwd_packed if plan.kernel == "packed" else _attn_fwd_main
    kernel[plan.grid](q, k, v, out, cu_seqlens, *plan.args, **plan.constexprs)
    return out
