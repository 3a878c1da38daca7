"""Which ViT attention backend runs: the catalog (one registry of backends), what is importable
here, measured speeds, and the pure resolver that decides from them. No torch, no vLLM imports."""
