"""The order in which arms are timed (pure: no processes, no I/O).

Drift (clocks, thermals, a noisy neighbour) must fall on all arms alike, so timed rounds
alternate between arms and the order rotates: with arms A, B the rounds run A B, B A, B A, A B
(the pattern A B B A ...), and with more arms every arm takes every place equally often over
2 x arms rounds. Round r of every arm draws the same images, so round r pairs arms.
"""

from __future__ import annotations

# Engines reserve gpu_memory_utilization of the whole device each; vLLM's default is 0.9.
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
TOGETHER_BUDGET = 0.95  # what the engines' reservations may add up to on one device


def round_order(names: list[str], rounds: int) -> list[tuple[int, str]]:
    """[(round, name), ...] in timing order: round r runs a rotation of the names, every second
    round reversed."""
    out: list[tuple[int, str]] = []
    n = len(names)
    for r in range(rounds):
        shift = (r // 2) % n if n else 0
        order = names[shift:] + names[:shift]
        if r % 2:
            order = order[::-1]
        out += [(r, name) for name in order]
    return out


def visit_order(names: list[str], rounds: int, visits: int) -> list[tuple[str, list[int]]]:
    """When the engines cannot be alive together: [(name, rounds of this visit), ...], one
    worker start per visit. The rounds are split into ``visits`` blocks (at most ``rounds``);
    block b visits the names in the rotating order of :func:`round_order`'s round b."""
    visits = max(1, min(visits, rounds))
    edges = [round(rounds * b / visits) for b in range(visits + 1)]
    blocks = [list(range(edges[b], edges[b + 1])) for b in range(visits)]
    out: list[tuple[str, list[int]]] = []
    for b, block in enumerate(blocks):
        for _, name in round_order(names, b + 1)[len(names) * b:]:
            out.append((name, block))
    return out


def fits_together(on_gpu: bool, utilizations: list[float | None]) -> bool:
    """Whether every engine can stay alive at once: on a CPU always (each reserves its own
    KV-cache space in host memory); on a GPU when their memory reservations fit one device."""
    if not on_gpu:
        return True
    total = sum(VLLM_DEFAULT_GPU_MEMORY_UTILIZATION if u is None else float(u) for u in utilizations)
    return total <= TOGETHER_BUDGET
