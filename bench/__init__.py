"""Benchmarks of the project: real processes, numbers as ratios against a same-run baseline.

Each benchmark is a module run with ``python -m bench.<name>`` from the repository root;
``bench/RESULTS.md`` records what they measured and how to read it.
"""
