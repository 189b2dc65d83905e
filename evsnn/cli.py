"""The ``evsnn`` command: ``evsnn info model.h5``, ``evsnn demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ._version import __version__
from .errors import EvsnnError


def _info(args: argparse.Namespace) -> int:
    from .io.hdf5 import load
    from .model import provenance_to_dict

    model = load(args.model)
    if args.json:
        out = {
            "file": args.model,
            "populations": [{"name": p.name, "shape": list(p.shape), "neuron": p.neuron.kind,
                             "reset": p.neuron.reset, "size": p.size} for p in model.populations],
            "projections": [{"name": pr.name, "source": pr.source, "target": pr.target, "op": pr.op.kind,
                             "delay": pr.delay, "weights": pr.op.n_params, "synapses": pr.op.n_synapses(),
                             "connections": pr.op.n_connections()} for pr in model.projections],
            "neurons": model.n_neurons,
            "synapses": model.n_synapses(),
            "dt": model.dt,
            "readout": model.readout,
            "output": model.output,
            "provenance": provenance_to_dict(model.provenance),
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.model}")
        print(model.summary())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evsnn",
        description="Convert trained PyTorch networks to spiking networks, store them as HDF5, "
                    "and inspect them.",
    )
    parser.add_argument("--version", action="version", version=f"evsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="summarise a saved model: layers, shapes, neurons, synapses, provenance")
    info.add_argument("model", help="an evsnn HDF5 file")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_info)

    demo = sub.add_parser(
        "demo",
        help="train the Diehl et al. (2015) MLP on the bundled MNIST split, convert it, save it, show it",
    )
    demo.add_argument("--out", default="model.h5", help="where to save the converted model (default: model.h5)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the tuned recipe's)")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evsnn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (EvsnnError, FileNotFoundError) as err:
        print(f"evsnn {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
