"""bench-builder --planner-only: our per-step planning without FlashInfer, against a stock-like step
that reads seq_lens back from the device."""

from __future__ import annotations

import numpy as np

from vit_backend_plugin.flashinfer_host import planning
from vit_backend_plugin.tools.bench_builder.common import (
    SYNC_STEPS,
    _detector_armed,
    _syncs,
    _time,
    make_batch,
)


def gather_page_indices_torch(out, block_table, indptr, num_reqs: int, total: int):
    """Device page-index gather with torch ops only: row ``i``'s first ``indptr[i+1] -
    indptr[i]`` block ids, concatenated into ``out[:total]``. ``total`` (= ``indptr[-1]``) is
    known on the host, so nothing is read back from the device. Works on any device."""
    if total == 0:
        return out[:0]
    import torch

    pos = torch.arange(total, device=indptr.device, dtype=indptr.dtype)
    rows = torch.searchsorted(indptr[1 : num_reqs + 1], pos, right=True)
    cols = (pos - indptr[rows]).long()
    out[:total] = block_table[rows, cols]
    return out[:total]


def page_index_gather():
    """``(name, gather(out, block_table, indptr_dev, num_reqs, total))``: vLLM's own kernel,
    as the builder calls it, when vLLM's FlashInfer backend imports; else the torch gather."""
    try:
        from vllm.v1.attention.backends.flashinfer import _copy_page_indices_kernel as kernel
    except Exception:  # vLLM or flashinfer absent: no vLLM kernel to time
        return "torch_searchsorted", gather_page_indices_torch

    def gather(out, block_table, indptr, num_reqs, total):
        kernel[(num_reqs,)](out[:total], block_table, block_table.stride(0), indptr, BLOCK_SIZE=1024)
        return out[:total]
    return "vllm_copy_page_indices_kernel", gather


class _PlannerState:
    """Persistent pinned host buffers + device buffers, sized once (as the builder does)."""

    def __init__(self, torch, max_reqs: int, max_pages: int, dev):
        n = max_reqs + 1
        self.host = {k: torch.zeros(n, dtype=torch.int32, pin_memory=True) for k in
                     ("indptr", "last", "qo_p", "kvl_p", "kvl_d", "seq", "pages")}
        self.np = {k: v.numpy() for k, v in self.host.items()}
        self.dev = {k: torch.zeros(n, dtype=torch.int32, device=dev) for k in ("indptr", "last", "qo_p", "kvl_p", "kvl_d")}
        self.idx_dev = torch.zeros(max_pages, dtype=torch.int32, device=dev)


def _planner_step(st: _PlannerState, qo, computed, bt_dev, threshold, page_size, gather):
    """The builder's host path minus FlashInfer: plan on the host, copy the indptr (pinned,
    non_blocking), gather page indices on the device, copy the other planning arrays (the
    copies FlashInfer's plan() makes from what the builder passes)."""
    n = len(computed)
    seq = planning.host_seq_lens(computed, qo, out=st.np["seq"][:n])
    split = planning.split_decodes_and_prefills(qo, int(qo[-1]), int((qo[1:] - qo[:-1]).max()),
                                                threshold, require_uniform=True)
    plan = planning.plan_batch(qo, seq, page_size, split, indptr_out=st.np["indptr"],
                               last_page_len_out=st.np["last"], qo_indptr_prefill_out=st.np["qo_p"],
                               kv_lens_prefill_out=st.np["kvl_p"], kv_lens_decode_out=st.np["kvl_d"],
                               pages_scratch=st.np["pages"])
    total = int(plan.paged_kv_indptr[n])
    indptr_dev = st.dev["indptr"][: n + 1]
    indptr_dev.copy_(st.host["indptr"][: n + 1], non_blocking=True)
    gather(st.idx_dev, bt_dev, indptr_dev, n, total)
    for k, m in (("last", n), ("qo_p", len(plan.qo_indptr_prefill)),
                 ("kvl_p", len(plan.kv_lens_prefill)), ("kvl_d", len(plan.kv_lens_decode))):
        if m:
            st.dev[k][:m].copy_(st.host[k][:m], non_blocking=True)
    return plan


def _stock_like_step(torch, seq_lens_dev, qo_cpu, bt_dev, idx_dev, page_size, gather):
    """What the stock builder does per build under spec decode, minus FlashInfer: a D2H
    read of seq_lens, torch CPU math, fresh pinned copies of each planning array, and the
    same device page-index gather."""
    seq = seq_lens_dev.cpu()  # device -> host: waits for the GPU
    pages = (seq + page_size - 1) // page_size
    indptr = torch.zeros(len(seq) + 1, dtype=torch.int32)
    torch.cumsum(pages, 0, out=indptr[1:])
    last = seq % page_size
    last = torch.where((last == 0) & (seq != 0), page_size, last).to(torch.int32)
    kvl = (torch.clamp(indptr[1:] - indptr[:-1] - 1, min=0) * page_size + last)
    out = [t.pin_memory().to("cuda", non_blocking=True) for t in (qo_cpu, indptr, last, kvl)]
    gather(idx_dev, bt_dev, out[1], len(seq), int(indptr[-1]))
    return out


def run_planner_only(args, torch) -> dict:
    dev = torch.device("cuda")
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    gather_name, gather = page_index_gather()
    width = -(-(args.max_context + 512) // args.page_size)
    st = _PlannerState(torch, max(sizes), max(sizes) * width, dev)
    stock_idx = torch.zeros(max(sizes) * width, dtype=torch.int32, device=dev)
    armed, armed_msg = _detector_armed(torch)
    rows = []
    for mode in args.modes:
        rng = np.random.default_rng(args.seed)
        for bs in sizes:
            qo, computed, bt, q_dec = make_batch(rng, bs, mode, args.spec_tokens, args.page_size, args.max_context)
            threshold = q_dec if mode == "spec" else 1
            bt_dev = torch.from_numpy(bt).to(dev)
            seq_dev = torch.from_numpy(planning.host_seq_lens(computed, qo)).to(dev)
            qo_cpu = torch.from_numpy(qo)
            ours = lambda qo=qo, computed=computed, bt_dev=bt_dev, threshold=threshold: _planner_step(  # noqa: E731
                st, qo, computed, bt_dev, threshold, args.page_size, gather)
            stock = lambda seq_dev=seq_dev, qo_cpu=qo_cpu, bt_dev=bt_dev: _stock_like_step(  # noqa: E731
                torch, seq_dev, qo_cpu, bt_dev, stock_idx, args.page_size, gather)
            plan = ours()
            indptr, last, split = plan.paged_kv_indptr.copy(), plan.last_page_len.copy(), plan.split
            torch.cuda.synchronize()
            n, total = bs, int(indptr[bs])
            # what reached the device equals the host planner and the host gather reference
            ref_idx = planning.paged_kv_indices(bt, indptr, np.zeros(total + 1, np.int32))
            dev_ok = (st.dev["indptr"][: n + 1].cpu().numpy().tolist() == indptr.tolist()
                      and st.dev["last"][:n].cpu().numpy().tolist() == last.tolist()
                      and st.idx_dev[:total].cpu().numpy().tolist() == ref_idx.tolist())
            t_ours = _time(ours, args.iters, args.warmup, torch)
            t_stock = _time(stock, args.iters, args.warmup, torch)
            torch.cuda.synchronize()
            s_ours, m_ours = _syncs(ours)
            torch.cuda.synchronize()
            s_stock, m_stock = _syncs(stock)
            torch.cuda.synchronize()
            rows.append({"mode": mode, "batch_size": bs, "num_tokens": int(qo[-1]), "num_pages": total,
                         "split": list(map(int, split)), "device_arrays_match_planner": bool(dev_ok),
                         "host_planner_us": t_ours, "stock_like_us": t_stock,
                         "host_planner_syncs": s_ours, "host_planner_sync_message": m_ours,
                         "stock_like_syncs": s_stock, "stock_like_sync_message": m_stock})
            print(f"{mode:6s} bs={bs:4d} ours {t_ours['median_us']:8.1f} us syncs={s_ours} | "
                  f"stock-like {t_stock['median_us']:8.1f} us syncs={s_stock} | device ok={dev_ok}", flush=True)
    return {"bench": "planner-only", "gather": gather_name, "sync_steps": SYNC_STEPS,
            "detector_armed": armed, "detector_message": armed_msg, "rows": rows}
