"""Backends: each lowers a NIR graph and runs it, returning outputs and per-node records."""
