"""Helpers of `benchmark.py`: the processes it starts, the agent scenarios, the per-call figures."""
