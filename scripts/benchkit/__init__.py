"""Pieces of `make bench` (scripts/bench.py): the stack, the load generator, the raw loops."""
