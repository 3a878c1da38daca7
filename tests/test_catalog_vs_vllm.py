"""The catalog's rules for vLLM-provided backends must say what vLLM 0.32's own classes say."""

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402
from vllm.platforms.interface import DeviceCapability  # noqa: E402
from vllm.v1.attention.backends.registry import AttentionBackendEnum  # noqa: E402

from vit_backend_plugin.selection.catalog import load_catalog  # noqa: E402
from vit_backend_plugin.selection.resolver import ResolveRequest, why_unusable  # noqa: E402

CAT = load_catalog()
TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@pytest.mark.parametrize("name", ["FLASH_ATTN", "TRITON_ATTN", "FLASHINFER"])
def test_catalog_matches_vllm_backend_class(name):
    cls = AttentionBackendEnum[name].get_class()
    spec = CAT.backends[name]
    for head in range(1, 600):
        # features: everything the backend needs is importable (vllm_fa4 absent, as on this CPU box)
        r = ResolveRequest(head_size=head, dtype="float16", platform="cuda", capability=None,
                           features=frozenset(spec.requires.get("cuda", ())))
        ours = why_unusable(spec, r) is None
        assert ours == bool(cls.supports_head_size(head)), (name, head)
    for dtype, tdtype in TORCH_DTYPES.items():
        assert (dtype in spec.dtypes) == (tdtype in cls.supported_dtypes), (name, dtype)
    for major, minor in [(7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0), (12, 1)]:
        cc = major + minor / 10
        need = spec.min_capability_for("float16")
        ours = (need is None or cc >= need) and (spec.max_capability is None or cc <= spec.max_capability)
        assert ours == bool(cls.supports_compute_capability(DeviceCapability(major, minor))), (name, cc)


def test_catalog_names_vllm_backends_that_exist():
    for name, spec in CAT.backends.items():
        if spec.provider == "vllm":
            assert name in AttentionBackendEnum.__members__, name
