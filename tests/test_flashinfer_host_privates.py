"""FLASHINFER_HOST's coupling to vLLM privates is documented and checked against the installed vLLM.

builder.py's AST is scanned for ``self._x`` / ``super()._x`` / ``getattr(self, "_x")`` reads and
``from vllm... import _x``; names the builder module defines itself are told apart from the
ones it inherits from vLLM's stock ``FlashInferMetadataBuilder``. The inherited/imported
set must equal ``VLLM_PRIVATES`` (a new one must be documented), and every documented name
must exist in the installed vLLM (an upgrade that removes one fails here). What the builder
derives from public config instead is compared with the stock builder's own values.
"""

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vllm")
pytest.importorskip("flashinfer")

import torch  # noqa: E402
from test_flashinfer_host_vllm import make_env  # noqa: E402

from vit_backend_plugin.flashinfer_host import builder, planning  # noqa: E402

BUILDER_SRC = Path(builder.__file__).read_text()
FI_MODULE = "vllm.v1.attention.backends.flashinfer"


def scan(src: str):
    """(names the module defines on its own classes/instances, self-attribute reads,
    private names imported from vllm as {name: module})."""
    tree = ast.parse(src)
    own, reads, imports = set(), set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    own.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute):
            v = node.value
            on_self = isinstance(v, ast.Name) and v.id == "self"
            on_super = isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super"
            if on_self and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif on_self or on_super:
                reads.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "hasattr") and len(node.args) >= 2:
            obj, name = node.args[:2]
            if isinstance(obj, ast.Name) and obj.id == "self" and isinstance(name, ast.Constant):
                reads.add(name.value)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vllm":
            imports.update({a.name: node.module for a in node.names if a.name.startswith("_")})
    return own, reads, imports


def vllm_privates_used(src: str) -> set[str]:
    own, reads, imports = scan(src)
    return {r for r in reads - own if r.startswith("_") and not r.startswith("__")} | set(imports)


def test_scanner_sees_inherited_private_reads_and_imports():
    """The scan itself: an added inherited private, super() call or private import shows up;
    a private the module assigns itself does not."""
    base = vllm_privates_used(BUILDER_SRC)
    extra = BUILDER_SRC + (
        "\n\nclass X(FlashInferMetadataBuilder):\n"
        "    def f(self):\n"
        "        self._mine = 1\n"
        "        return self._mine, self._decode_wrapper, super()._get_workspace_buffer(),"
        " getattr(self, '_workspace_buffer')\n"
        "from vllm.v1.attention.backends.flashinfer import _make_xqa_draft_block_mask\n")
    assert vllm_privates_used(extra) - base == {
        "_decode_wrapper", "_get_workspace_buffer", "_workspace_buffer", "_make_xqa_draft_block_mask"}


def test_every_vllm_private_the_builder_uses_is_documented():
    assert vllm_privates_used(BUILDER_SRC) == set(builder.VLLM_PRIVATES)
    assert all(isinstance(v, str) and len(v) > 20 for v in builder.VLLM_PRIVATES.values())


def test_every_public_stock_state_the_builder_reads_is_documented():
    own, reads, _ = scan(BUILDER_SRC)
    public = {r for r in reads - own if not r.startswith("_")}
    documented = set(builder.VLLM_BUILDER_BUFFERS) | set(builder.VLLM_BUILDER_STATE)
    assert public - {"build", "build_for_drafting"} == documented


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_env(tmp_path_factory.mktemp("tiny_privates"))


def test_documented_names_exist_in_installed_vllm(env):
    """Privates: class attributes of the stock builder or names of vLLM's flashinfer module
    (imports: of the module they are imported from). Builder state: attributes of a stock
    builder instance built from a real VllmConfig."""
    from vllm.v1.attention.backends.flashinfer import FlashInferMetadataBuilder

    _, _, imports = scan(BUILDER_SRC)
    fi = importlib.import_module(FI_MODULE)
    for name in builder.VLLM_PRIVATES:
        if name in imports:
            assert hasattr(importlib.import_module(imports[name]), name), name
        else:
            assert hasattr(FlashInferMetadataBuilder, name) or hasattr(fi, name), name
    stock = env["make"](stock=True)
    for name in [*builder.VLLM_BUILDER_BUFFERS, *builder.VLLM_BUILDER_STATE]:
        assert hasattr(stock, name), name
    assert hasattr(stock.paged_kv_indptr, "gpu")


def test_our_own_privates_do_not_shadow_stock_state(env):
    """A name our builder assigns must not be one stock's build() reads from its own state."""
    own, _, _ = scan(BUILDER_SRC)
    stock = env["make"](stock=True, num_spec=2, cudagraph=True)
    ours_private = {n for n in own if n.startswith("_") and not n.startswith("__")}
    assert not {n for n in ours_private if hasattr(stock, n)}


# ------------------------------------------------------ derived from public config instead
@pytest.mark.parametrize("num_spec,capture_size", [(0, None), (0, 8), (3, None), (3, 40), (3, 400)])
def test_derived_values_equal_stock_privates(env, num_spec, capture_size):
    stock = env["make"](stock=True, num_spec=num_spec, cudagraph=True, capture_size=capture_size)
    ours = env["make"](num_spec=num_spec, cudagraph=True, capture_size=capture_size)
    assert stock.enable_cuda_graph and ours.enable_cuda_graph
    assert ours._num_spec == stock._num_speculative_tokens == num_spec
    assert ours._decode_cg_max_bs == stock._decode_cudagraph_max_bs


@pytest.mark.parametrize("xqa", [False, True])
def test_decode_query_lens_equal_stock_compute_decode_query_lens(env, xqa):
    """planning.decode_query_lens on query_start_loc_cpu vs stock's private method on the same
    inputs: uniform, CUDA-graph zero-length padding, ragged, single-token rows."""
    stock = env["make"](stock=True)
    stock.use_xqa = xqa
    rng = np.random.default_rng(1)
    cases = [[4, 4, 4], [4, 4, 0, 0], [4, 2, 4], [1, 1, 1], [1, 0, 1], [3], [2, 1, 0], [0, 0]]
    cases += [list(rng.integers(0, 6, rng.integers(1, 9))) for _ in range(200)]
    seen = set()
    for ql in cases:
        qo = np.zeros(len(ql) + 1, np.int32)
        qo[1:] = np.cumsum(ql)
        nd, ndt = len(ql), int(qo[-1])
        qo_t = torch.from_numpy(qo.copy())
        q, offsets, ragged = stock._compute_decode_query_lens(qo_t, qo_t, nd, ndt)
        got = planning.decode_query_lens(qo, nd, ndt, xqa=xqa)
        assert got.q_len_per_req == q, ql
        assert got.device_offsets == (offsets is not None), ql
        if offsets is not None:
            assert offsets.tolist() == qo.tolist()  # stock: query_start_loc[: nd + 1]
        assert got.ragged_q_lens == ragged, ql
        seen.add((got.device_offsets, got.ragged_q_lens is not None))
    assert (True, xqa) in seen and (False, False) in seen  # both branches were exercised
