"""Throughput benchmarks of mailferry on the local stack (``python -m bench``)."""
