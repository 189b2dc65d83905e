"""The ``evsnn`` command: ``evsnn info``, ``evsnn run``, ``evsnn report``, ``evsnn demo``."""

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


def _report(args: argparse.Namespace) -> int:
    from .energy import energy_report, get_preset
    from .io.datasets import mnist_split
    from .io.hdf5 import load
    from .simulation import simulate

    preset = get_preset(args.preset)  # fail on a bad preset before simulating
    ann_preset = None if args.ann_preset is None else get_preset(args.ann_preset)
    model = load(args.model)
    data = mnist_split()
    if not 1 <= args.samples <= len(data.x_test):
        raise InputError(f"--samples must be between 1 and {len(data.x_test)}, got {args.samples}.")
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    result = simulate(model, x, engine=args.engine, steps=args.steps, encoding=args.encoding, seed=args.seed,
                      max_rate=args.max_rate, batch_size=args.batch_size, dtype=args.dtype,
                      progress=not args.quiet and not args.json)
    report = energy_report(result, model, x=x, labels=y, preset=preset, ann_preset=ann_preset,
                           sop_convention=args.sops, input_macs=args.input_macs, source=args.model,
                           data=f"bundled MNIST evaluation images [8000:{8000 + args.samples}]")
    print(report.to_json() if args.json else report.format())
    if args.csv:
        report.to_csv(args.csv)
    if args.plot:
        report.plot(args.plot)
    for path in (args.csv, args.plot):
        if path and not args.json:
            print(f"wrote {path}")
    return 0


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="simulate a saved model on the bundled MNIST evaluation images and report its operations and "
             "energy beside its ANN's",
    )
    report.add_argument("model", help="an evsnn HDF5 file")
    report.add_argument("--preset", default="cmos45-fp32",
                        help="energy per operation: cmos45-fp32 (default), cmos45-fp16, cmos45-int8, "
                             "cmos45-int32, loihi, truenorth, spinnaker, or a .toml/.json preset file")
    report.add_argument("--ann-preset", default=None, help="energy preset of the ANN (default: --preset)")
    report.add_argument("--engine", default="event", help="simulation engine (default: event)")
    report.add_argument("--steps", type=int, default=100, help="simulation steps (default: 100)")
    report.add_argument("--encoding", choices=["current", "poisson", "regular"], default=None,
                        help="input encoding (default: the model's)")
    report.add_argument("--max-rate", type=float, default=None, help="input rate of a white pixel, Hz")
    report.add_argument("--samples", type=int, default=2000, help="evaluation images to run (default: 2000)")
    report.add_argument("--batch-size", type=int, default=64, help="samples simulated together (default: 64)")
    report.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    report.add_argument("--seed", type=int, default=0, help="seed of the Poisson encoder (default: 0)")
    report.add_argument("--sops", choices=["nonzero", "nominal"], default="nonzero",
                        help="a spike's synapses: its non-zero weights (default) or every connection")
    report.add_argument("--input-macs", choices=["per-step", "once"], default="per-step",
                        help="analog-input MACs every step (default) or once")
    report.add_argument("--plot", default=None, help="write the figure here (.png, .pdf or .svg)")
    report.add_argument("--csv", default=None, help="write the per-step table here (CSV)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=_report)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, epochs=args.epochs, seed=args.seed, steps=args.steps, progress=not args.quiet)
    return 0


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

    _add_report_parser(sub)

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
