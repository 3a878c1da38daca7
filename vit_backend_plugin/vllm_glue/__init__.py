"""Everything that touches vLLM internals. Imported only from plugin.register()."""
