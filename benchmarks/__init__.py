"""simyard's benchmark command: ``python -m benchmarks [SCENARIO ...] [--runs N]``.

Each scenario is one module (``floor``, ``submit``, ``staging``, ``logs``) with a
``run(bench)`` function that measures and prints; nothing here fails on timing.
The figures are compared with the quality bars of SPEC.md; see docs/benchmarks.md.
"""
