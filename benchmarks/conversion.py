"""Conversion time of the Diehl CNN with 1,000 calibration images (target: under 10 s).

    python benchmarks/conversion.py

Times ``evsnn.convert`` on the untrained Diehl CNN (seed 0; the time does not
depend on the training) for every normalization, with and without the L4
adjustment: the torch.fx import with pooling folds, the rate model on the
calibration images, the rescaling. The best of three runs is printed.
"""

from __future__ import annotations

import os
import time

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.training import diehl_cnn


def main() -> None:
    calibration = mnist_split().x_train[:1000]
    net = diehl_cnn(seed=0)
    print(f"Diehl CNN, {len(calibration)} calibration images, {os.cpu_count()} CPU cores, best of 3 runs")
    for norm, l4 in (("none", None), ("model", None), ("data", None), ("percentile", None), ("data", 1.0)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            evsnn.convert(net, input_shape=(1, 28, 28), norm=norm, calibration=calibration, l4_alpha=l4)
            times.append(time.perf_counter() - start)
        label = f"norm={norm}" + (f" + L4 (alpha={l4:g})" if l4 is not None else "")
        print(f"  {label:<28} {min(times):6.2f} s")


if __name__ == "__main__":
    main()
