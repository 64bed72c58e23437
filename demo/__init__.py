"""``make demo`` (``python -m demo``): simulated registers probed by the real agent drivers."""
