"""Broker benchmarks: the workload, the brokers, and each implementation's client process.

``bench_brokers`` (the driver) loads a fresh input, starts one implementation in a
fresh process (``python -m brokerbench.client``), watches the output fill, and
checks it afterwards. The modules here are what runs inside those processes.
"""
