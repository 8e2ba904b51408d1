"""Benchmarks of datafold-dynamo against what users would pick instead (``python -m bench``).

One module per comparison (``bulk_load``, ``reads``, ``clear_schemas``, ``limiter``,
``scaling``, ``memory``, ``overhead``), each ``run(env) -> Section``; ``env`` owns the tables,
worker processes and Redis database of the run; ``report`` writes BENCHMARKS.md and the chart.
"""
