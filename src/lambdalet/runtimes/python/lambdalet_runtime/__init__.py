"""lambdalet's Python runtime, run inside a function's environment (standard library only)."""
