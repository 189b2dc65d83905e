"""Measure where torch's dense product beats the event kernels: the table ``BLAS_COST_RATIO`` of evsnn/engines/event.py.

    python benchmarks/crossover.py            # one core, float32

For a dense layer (1200 x 1200, the Diehl MLP's hidden layer) and a folded
conv (64c10 stride 2 on 12 x 24 x 24, the Diehl CNN's second layer), at batch
1, 8 and 64: the time of one delivery by the event kernel per synaptic add
(spikes at 5% density) and by torch (matmul / conv2d of the dense spike array,
its filling and the add included) per multiply-add. Their ratio is printed as
the table to paste; the engine's crossover density is then ``ratio * MACs /
connections`` per projection.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evsnn.engines.event import _ConvDelivery, _DenseDelivery  # noqa: E402
from evsnn.ops import Conv2d, Dense  # noqa: E402


def best_time(fn, repeats: int = 7) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ratio(delivery, batch: int, density: float, rng: np.random.Generator) -> float:
    op = delivery.op
    spikes = rng.random((batch, op.n_in)) < density
    counts = spikes.sum(axis=1).astype(np.int64)
    flat = np.nonzero(spikes)[1].astype(np.int64)
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    out = np.zeros((batch, op.n_out), dtype=np.float32)
    sops = int(op.fan_out()[1][flat].sum())
    t_event = best_time(lambda: delivery.deliver(False, starts, counts, flat, False, out))
    t_blas = best_time(lambda: delivery.deliver(False, starts, counts, flat, True, out))
    return (t_blas / (batch * delivery.macs)) / (t_event / sops)


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    dense = _DenseDelivery(Dense(rng.standard_normal((1200, 1200))), np.dtype("float32"), None)
    conv = _ConvDelivery(Conv2d(rng.standard_normal((64, 12, 10, 10)), input_shape=(12, 24, 24), stride=2),
                         np.dtype("float32"), None)
    print("one core, float32; (seconds per MAC of torch) / (seconds per synaptic add of the event kernel)")
    table = {}
    for name, delivery in (("dense", dense), ("conv2d", conv)):
        table[name] = {batch: round(ratio(delivery, batch, 0.05, rng), 3) for batch in (1, 8, 64)}
        print(f"  {name:<7}", "  ".join(f"batch {b}: {r}" for b, r in table[name].items()))
    print("BLAS_COST_RATIO =", table)


if __name__ == "__main__":
    main()
