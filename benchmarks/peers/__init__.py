"""Our scripts beside other libraries (d3rlpy 2.8.1), each in its own virtual environment.

    python -m benchmarks.peers.setup      # benchmarks/peers/.venv: the same torch as ours, d3rlpy 2.8.1
    python -m benchmarks.peers.compare    # interleaved speed rounds -> benchmarks/results/speed/peers.json
    python -m benchmarks.peers.report     # the speed section of docs/benchmarks.md from that JSON
"""
