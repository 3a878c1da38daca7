"""Test-wide setup: vLLM runs on its CPU platform here (no GPU on dev machines or CI), and the
plugin's user-local tables are a per-session temporary directory, never the developer's own."""

import atexit
import os
import shutil
import tempfile

# Must be set before vLLM is imported anywhere: selects vLLM's CPU platform.
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
# Keep runs hermetic: nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The user speed table and VIT_TRITON configs (`vit-parity tune`) outrank the shipped ones: a
# developer's own ~/.cache tables would change what tests resolve. Environment variables, so
# child processes (vLLM engines, CLI runs) inherit them; overwritten, not setdefault, because a
# developer's shell may set them too. VIT_PARITY_CACHE and HOME stay: the demo e2e tests keep
# their downloads in their own caches.
USER_TABLES = tempfile.mkdtemp(prefix="vit-tests-user-tables-")
os.environ["VIT_SPEED_TABLE"] = os.path.join(USER_TABLES, "speed_table.json")
os.environ["VIT_TRITON_CONFIGS"] = os.path.join(USER_TABLES, "vit_triton_configs.json")
atexit.register(shutil.rmtree, USER_TABLES, ignore_errors=True)
