"""Benchmarks, run by hand (``python -m bench.<name>``); results go to BENCHMARKS.md.

Every figure is a ratio against a baseline measured in the same run, because absolute
numbers on shared machines are noisy. All traffic stays on 127.0.0.1.
"""
