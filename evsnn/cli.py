"""The ``evsnn`` command: ``evsnn info``, ``evsnn run``, ``evsnn validate``, ``evsnn demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ._version import __version__
from .errors import EvsnnError, InputError


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


def _run(args: argparse.Namespace) -> int:
    from .io.datasets import mnist_split
    from .io.hdf5 import load
    from .result import format_summary
    from .simulation import simulate

    model = load(args.model)
    data = mnist_split()
    if not 1 <= args.samples <= len(data.x_test):
        raise InputError(f"--samples must be between 1 and {len(data.x_test)}, got {args.samples}.")
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    result = simulate(model, x, engine=args.engine, steps=args.steps, encoding=args.encoding, seed=args.seed,
                      max_rate=args.max_rate, batch_size=args.batch_size, dtype=args.dtype,
                      progress=not args.quiet and not args.json)
    summary = {"model": args.model, "data": f"bundled MNIST evaluation images [8000:{8000 + args.samples}]",
               **result.summary(y)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, epochs=args.epochs, seed=args.seed, steps=args.steps, progress=not args.quiet)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .io.datasets import mnist_split
    from .io.hdf5 import load
    from .validate import convergence, validate

    model = load(args.model)
    data = mnist_split()
    if not 1 <= args.samples <= len(data.x_test):
        raise InputError(f"--samples must be between 1 and {len(data.x_test)}, got {args.samples}.")
    props = ("same_step", "next_step") if args.propagation == "both" else (args.propagation,)
    try:
        factors = [int(k) for k in args.convergence.split(",")] if args.convergence else []
    except ValueError as err:
        raise InputError(f"--convergence must be comma-separated integers such as 10,100, got "
                         f"{args.convergence!r}.") from err
    x = data.x_test[: args.samples]
    common = dict(steps=args.steps, encoding=args.encoding, seed=args.seed, max_rate=args.max_rate,
                  progress=not args.quiet and not args.json)
    report = validate(model, x, engines=(args.engine, args.against), dtype=(args.dtype, "float64"),
                      propagation=props, **common)
    conv = (convergence(model, x, engine=args.engine, factors=[1, *factors], dtype=args.dtype,
                        propagation=props[0], **common) if factors else None)
    data_note = f"bundled MNIST evaluation images [8000:{8000 + args.samples}]"
    if args.json:
        out = {"model": args.model, "data": data_note, **report.to_dict()}
        if conv is not None:
            out["convergence"] = conv.to_dict()
        print(json.dumps(out, indent=2, default=float))
    else:
        print(f"{args.model}: {data_note}")
        print(report.table())
        if conv is not None:
            print()
            print(conv.table())
    return 2 if args.strict and not report.identical else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evsnn",
        description="Convert trained PyTorch networks to spiking networks, store them as HDF5, "
                    "inspect them and simulate them event-driven with exact synaptic-operation counts.",
    )
    parser.add_argument("--version", action="version", version=f"evsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="summarise a saved model: layers, shapes, neurons, synapses, provenance")
    info.add_argument("model", help="an evsnn HDF5 file")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_info)

    run = sub.add_parser("run", help="simulate a saved model on the bundled MNIST evaluation images")
    run.add_argument("model", help="an evsnn HDF5 file")
    run.add_argument("--engine", default="event", help="simulation engine (default: event)")
    run.add_argument("--steps", type=int, default=100, help="simulation steps (default: 100)")
    run.add_argument("--encoding", choices=["current", "poisson", "regular"], default=None,
                     help="input encoding (default: the model's)")
    run.add_argument("--max-rate", type=float, default=None, help="input rate of a white pixel, Hz")
    run.add_argument("--samples", type=int, default=2000, help="evaluation images to run (default: 2000)")
    run.add_argument("--batch-size", type=int, default=64, help="samples simulated together (default: 64)")
    run.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    run.add_argument("--seed", type=int, default=0, help="seed of the Poisson encoder (default: 0)")
    run.add_argument("--json", action="store_true", help="print machine-readable JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    val = sub.add_parser("validate", help="cross-validate a saved model: an engine against the Brian2 reference, "
                                          "spike for spike, on the bundled MNIST evaluation images")
    val.add_argument("model", help="an evsnn HDF5 file")
    val.add_argument("--against", default="brian2", help="the reference engine (default: brian2, run in float64)")
    val.add_argument("--engine", default="event", help="the engine under test (default: event)")
    val.add_argument("--samples", type=int, default=20, help="evaluation images to run (default: 20)")
    val.add_argument("--steps", type=int, default=100, help="simulation steps (default: 100)")
    val.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                     help="precision of the engine under test (default: float64)")
    val.add_argument("--encoding", choices=["current", "poisson", "regular"], default=None,
                     help="input encoding (default: the model's)")
    val.add_argument("--max-rate", type=float, default=None, help="input rate of a white pixel, Hz")
    val.add_argument("--seed", type=int, default=0, help="seed of the Poisson encoder (default: 0)")
    val.add_argument("--propagation", choices=["same_step", "next_step", "both"], default="same_step",
                     help="delay-0 convention: spikes cross all layers in their step (same_step, default) or "
                          "one step per layer (next_step, Brian2's default schedule)")
    val.add_argument("--convergence", default=None, metavar="K,K",
                     help="also compare against Brian2 at dt/K for each K, e.g. 10,100")
    val.add_argument("--strict", action="store_true", help="exit with status 2 unless identical spike for spike")
    val.add_argument("--json", action="store_true", help="print machine-readable JSON")
    val.add_argument("--quiet", action="store_true", help="no progress bar")
    val.set_defaults(func=_validate)

    demo = sub.add_parser(
        "demo",
        help="train the Diehl et al. (2015) MLP on the bundled MNIST split, convert, save and simulate it",
    )
    demo.add_argument("--out", default="model.h5", help="where to save the converted model (default: model.h5)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the tuned recipe's)")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    demo.add_argument("--steps", type=int, default=100, help="simulation steps (default: 100)")
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
