"""Small helpers every part shares: cache paths, atomic writes. No torch, no vLLM."""
