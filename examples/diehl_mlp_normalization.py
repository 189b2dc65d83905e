"""Diehl et al. (2015) MLP: SNN accuracy after 25/50/100 steps for each weight normalization.

    python examples/diehl_mlp_normalization.py

Trains the demo's MLP (seed 0, the demo recipe), converts it with each
normalization (calibration: the 8,000 training images), and runs the event
engine on the 2,000 evaluation images with analog ("current") input.
"""

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.training import accuracy, train_diehl


def main() -> None:
    data = mnist_split()
    net, _ = train_diehl("mlp", data.x_train, data.y_train, seed=0)
    print(f"ANN accuracy: {100 * accuracy(net, data.x_test, data.y_test):.2f}%")
    print(f"{'norm':<12}{'25 steps':>10}{'50 steps':>10}{'100 steps':>10}{'SOPs/sample':>14}  factors")
    for norm in evsnn.converters.NORMS:
        model = evsnn.convert(net, input_shape=(1, 28, 28), norm=norm, calibration=data.x_train)
        result = evsnn.simulate(model, data.x_test, steps=100)
        acc = result.accuracy_over_time(data.y_test)
        factors = model.provenance.get("normalization_factors", {})
        print(f"{norm:<12}{100 * acc[24]:>9.2f}%{100 * acc[49]:>9.2f}%{100 * acc[99]:>9.2f}%"
              f"{result.total_sops().mean():>14,.0f}  " + " ".join(f"{k}={v:.2f}" for k, v in factors.items()))


if __name__ == "__main__":
    main()
