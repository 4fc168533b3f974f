"""A long W2 chain on 2 native chips, for profiling one hop:

    perf record -F 20000 -g python benchmarks/w2_chain_profile.py
    perf report --no-children --sort comm,symbol
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_tierflow import TierflowBench  # noqa: E402

if __name__ == "__main__":
    b = TierflowBench("chip")
    try:
        for _ in range(3):
            b.w2(n=2000)
        hops = sorted(b.w2(n=20000) for _ in range(5))
        print("µs per hop (5 runs of 20,000):", ", ".join(f"{h:.2f}" for h in hops))
    finally:
        b.close()
