"""Fault campaign (``make faults``): kills, storage outages, concurrent runs, corrupt artifacts,
fuzzed model outputs and secrets, each measured and written to ``reports/faults.md`` and
``metrics/faults.json``. Not part of ``make test``; ``tests/faults`` runs a miniature of it."""
