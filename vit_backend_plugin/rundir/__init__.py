"""The run directory: its layout (written by `vit-parity run`, read by `vit-parity report`) and
the one reader of lm-eval's output inside it."""
