"""Speed-table rows from a run (schema 1), merged over runs, and written."""

from __future__ import annotations

import json

from vit_backend_plugin.tools.bench_kernels.candidates import TABLE_NAMES
from vit_backend_plugin.tools.bench_kernels.shapes import seq_bucket
from vit_backend_plugin.tools.bench_kernels.summary import metric_value

TABLE_HOW = {"tflops": "", "stream_tflops": ", back to back", "graph_tflops": ", CUDA graph"}


def table_values(row: dict, metric: str = "tflops") -> dict[str, dict]:
    """candidate -> {"tflops", "numerics_ok"} for a speed-table row. Under ``graph_tflops``, a
    candidate that cannot be captured (it syncs with the host, like vLLM's TORCH_SDPA) keeps its
    eager speed: that only adds its host time, so it never flatters it."""
    out = {}
    for r in row["results"]:
        v = metric_value(r, metric) or r.get("tflops")
        if v:
            out[r["candidate"]] = {"tflops": v, "numerics_ok": r.get("numerics_ok")}
    return out


def speed_table_entries(rows: list[dict], device: str, capability: tuple[int, int], dtype: str,
                        how: str = "", metric: str = "tflops") -> list[dict]:
    entries = []
    for row in rows:
        by = table_values(row, metric)
        pick = by.pop("PICK", None)
        if pick and row.get("pick") in by:  # the pick is one more sample of that backend
            same = by[row["pick"]]
            by[row["pick"]] = dict(same, tflops=max(same["tflops"], pick["tflops"]),
                                   numerics_ok=same["numerics_ok"] and pick["numerics_ok"])
        sh = row["shape"]
        entries.append({
            "device": device, "capability": list(capability), "dtype": row.get("dtype") or dtype,
            "head_size": sh["head_dim"], "seq_len": list(seq_bucket(sh["lens"])), "shape": sh["name"],
            "equal_lengths": len(set(sh["lens"])) == 1, "num_seqs": len(sh["lens"]), "how": how,
            "tflops": {n: round(by[n]["tflops"], 1) for n in TABLE_NAMES if n in by},
            "numerics_ok": {n: bool(by[n]["numerics_ok"]) for n in TABLE_NAMES if n in by},
        })
        host = {r["candidate"]: (r.get("extra") or {}).get("host_us") for r in row["results"]}
        host = {n: host[n] for n in TABLE_NAMES if n in by and host.get(n)}
        if host:
            entries[-1]["host_us"] = host
    return entries


def merge_entries(runs: list[list[dict]]) -> list[dict]:
    """One row per shape over several runs of it: each backend's best TFLOP/s and least host time
    (noise only ever slows a run down) and numerics OK only if OK in every run."""
    merged: dict[tuple, dict] = {}
    for entries in runs:
        for e in entries:
            key = (e["device"], tuple(e["capability"]), e["dtype"], e["head_size"], e["shape"])
            if key not in merged:
                merged[key] = json.loads(json.dumps(e))
                continue
            m = merged[key]
            for name, t in e["tflops"].items():
                m["tflops"][name] = max(t, m["tflops"].get(name, 0.0))
                m["numerics_ok"][name] = m["numerics_ok"].get(name, True) and e["numerics_ok"].get(name, False)
            for name, us in e.get("host_us", {}).items():  # the host's noise only ever adds time
                m.setdefault("host_us", {})[name] = min(us, m.get("host_us", {}).get(name, us))
    return list(merged.values())


def write_speed_table(path: str, entries: list[dict], engine: list[dict] = ()) -> None:
    doc = {"schema": 1, "entries": entries}
    if engine:  # engine runs are not kernel measurements: carried over, never re-derived here
        doc["engine"] = list(engine)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def merged_engine_runs(merge_with: list[str]) -> list[dict]:
    """The engine runs of the --merge-with tables (first table wins per run name)."""
    out: dict[str, dict] = {}
    for p in merge_with:
        for e in json.load(open(p)).get("engine", []):
            out.setdefault(e["run"], e)
    return list(out.values())


def table_entries(data: dict, merge_with: list[str] = (), table_timing: str = "graph") -> list[dict]:
    """Speed-table rows from a run, under the timing asked for where the run measured it (else
    eager). A candidate the timing could not take (one that syncs, under a graph) keeps its eager
    time (:func:`table_values`)."""
    m = data["meta"]
    metric = f"{table_timing}_tflops" if table_timing in m.get("timings", []) and table_timing != "eager" \
        else "tflops"
    how = "vllm layer" if m.get("engine_faithful") else "raw kernel"
    entries = speed_table_entries(data["rows"], m["device"], tuple(m["capability"]), m["dtype"],
                                  how + TABLE_HOW[metric], metric)
    earlier = [json.load(open(p))["entries"] for p in merge_with]
    return merge_entries([entries, *earlier]) if earlier else entries
