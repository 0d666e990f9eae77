"""Generated exporter zoo for benchmarks/wild_models.py: realistic models written by exporters available here."""
