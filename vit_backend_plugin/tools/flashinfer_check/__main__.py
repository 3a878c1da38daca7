"""``python -m vit_backend_plugin.tools.flashinfer_check``: how the parent starts each child
(``--child SPEC``). Defines nothing itself, so whatever an engine-core process unpickles by
reference comes from a module imported by name."""

import argparse
import sys

from vit_backend_plugin.tools.flashinfer_check.cli import add_arguments, main

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(main(p.parse_args()))
