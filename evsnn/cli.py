"""The ``evsnn`` command: ``info``, ``run``, ``convert``, ``sweep``, ``report``, ``validate``, ``demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ._version import __version__
from .errors import EvsnnError, InputError
from .sweep import ALPHAS, LEAKS, METHODS, RESETS, THRESHOLDS


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


def _evaluation_images(samples: int):
    """The first ``samples`` bundled MNIST evaluation images and labels (``--samples``, checked)."""
    from .io.datasets import mnist_split

    data = mnist_split()
    if not 1 <= samples <= len(data.x_test):
        raise InputError(f"--samples must be between 1 and {len(data.x_test)}, got {samples}.")
    return data.x_test[:samples], data.y_test[:samples]


def _simulate(model, x, args: argparse.Namespace):
    """``simulate`` with the options of :func:`_simulation_options`."""
    from .simulation import simulate

    return simulate(model, x, engine=args.engine, steps=args.steps, encoding=args.encoding, seed=args.seed,
                    max_rate=args.max_rate, batch_size=args.batch_size, dtype=args.dtype,
                    progress=not args.quiet and not args.json)


def _simulation_options(p: argparse.ArgumentParser) -> None:
    """The model and simulation options shared by ``run`` and ``report``."""
    p.add_argument("model", help="an evsnn HDF5 file")
    p.add_argument("--engine", default="event", help="simulation engine (default: event)")
    p.add_argument("--steps", type=int, default=100, help="simulation steps (default: 100)")
    p.add_argument("--encoding", choices=["current", "poisson", "regular"], default=None,
                   help="input encoding (default: the model's)")
    p.add_argument("--max-rate", type=float, default=None, help="input rate of a white pixel, Hz")
    p.add_argument("--samples", type=int, default=2000, help="evaluation images to run (default: 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="samples simulated together (default: 64)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson encoder (default: 0)")


def _run(args: argparse.Namespace) -> int:
    from .io.hdf5 import load
    from .result import format_summary

    model = load(args.model)
    x, y = _evaluation_images(args.samples)
    result = _simulate(model, x, args)
    summary = {"model": args.model, "data": f"bundled MNIST evaluation images [8000:{8000 + args.samples}]",
               **result.summary(y)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _network(args: argparse.Namespace):
    """The torch network of ``--arch`` (``module:callable``) with the weights of ``args.checkpoint``."""
    import importlib

    import torch
    from torch import nn

    module_name, _, attr = args.arch.partition(":")
    try:
        kwargs = json.loads(args.arch_kwargs)
        builder = getattr(importlib.import_module(module_name), attr)
    except json.JSONDecodeError as err:
        raise InputError(f"--arch-kwargs must be a JSON object, got {args.arch_kwargs!r} ({err}).") from err
    except (ImportError, AttributeError, ValueError) as err:
        raise InputError(f"--arch must name a function or class as module:name (e.g. evsnn.training:diehl_cnn), "
                         f"got {args.arch!r} ({err}).") from err
    net = builder(**kwargs)
    if not isinstance(net, nn.Module):
        raise InputError(f"--arch {args.arch} must build a torch.nn.Module, got {type(net).__name__}.")
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ... for files it cannot read
        raise InputError(f"{args.checkpoint}: not a torch checkpoint of weights ({type(err).__name__}: {err}).") from err
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model_state_dict", state))
    if not isinstance(state, dict):
        raise InputError(f"{args.checkpoint}: must hold a state_dict (a dict of tensors), got {type(state).__name__}.")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"{args.checkpoint}: the weights do not fit --arch {args.arch}: {err}") from err
    return net.eval()


def _images(spec: str, option: str):
    """Training images ``start:stop`` of the bundled split, or a .npy file of shape (N, 1, 28, 28)."""
    import numpy as np

    from .io.datasets import mnist_split

    if spec.endswith(".npy"):
        return np.load(spec, allow_pickle=False), None
    data = mnist_split()
    try:
        start, stop = (int(v) for v in spec.split(":"))
    except ValueError as err:
        raise InputError(f"{option} must be START:STOP of the bundled training images or a .npy file, "
                         f"got {spec!r}.") from err
    if not 0 <= start < stop <= len(data.x_train):
        raise InputError(f"{option} must lie within the {len(data.x_train)} training images (0:{len(data.x_train)}), "
                         f"got {spec!r}.")
    return data.x_train[start:stop], data.y_train[start:stop]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise InputError(f"--input-shape must be comma-separated integers, e.g. 1,28,28, got {text!r}.") from err


def _convert(args: argparse.Namespace) -> int:
    from .converters import convert
    from .io.hdf5 import save
    from .model import NeuronSpec

    net = _network(args)
    needs_data = args.norm in ("data", "percentile") or args.l4_alpha is not None
    calibration = _images(args.calibration, "--calibration")[0] if needs_data else None
    neuron = NeuronSpec(kind=args.neuron, beta=args.beta, threshold=args.threshold, reset=args.reset)
    model = convert(net, input_shape=_shape(args.input_shape), norm=args.norm, calibration=calibration,
                    percentile=args.percentile, l4_alpha=args.l4_alpha, l4_layers=args.l4_layers,
                    zero_bias=args.zero_bias, neuron=neuron, readout=args.readout, input_encoding=args.encoding)
    provenance = {**model.provenance, "checkpoint": os.path.basename(args.checkpoint), "arch": args.arch,
                  "arch_kwargs": args.arch_kwargs, "calibration_images": args.calibration if needs_data else "none"}
    save(model.replace(provenance=provenance), args.output)
    print(f"saved {args.output}\n{model.summary()}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .converters import convert
    from .io.datasets import mnist_split
    from .sweep import plot_sweep, sweep

    def numbers(text: str, cast=float) -> list:
        try:
            return [cast(v) for v in text.split(",")]
        except ValueError as err:
            raise InputError(f"expected comma-separated values, got {text!r}.") from err

    net = _network(args)
    calibration = _images(args.calibration, "--calibration")[0]
    x_select, y_select = _images(args.select, "--select")
    if y_select is None:
        raise InputError("--select must be START:STOP of the bundled training images (it needs labels).")
    data = mnist_split()
    if not 0 <= args.eval_samples <= len(data.x_test):
        raise InputError(f"--eval-samples must be between 0 and {len(data.x_test)}, got {args.eval_samples}.")
    x_eval = data.x_test[:args.eval_samples] if args.eval_samples else None
    y_eval = data.y_test[:args.eval_samples] if args.eval_samples else None
    base = convert(net, input_shape=_shape(args.input_shape), norm=args.norm, calibration=calibration)
    out = Path(args.out)
    result = sweep(base, x_select=x_select, y_select=y_select, calibration=calibration, x_eval=x_eval, y_eval=y_eval,
                   log=out / "sweep.jsonl", steps=args.steps, encoding=args.encoding, leaks=numbers(args.leaks),
                   resets=numbers(args.resets, str), methods=numbers(args.methods, str),
                   thresholds=numbers(args.thresholds), alphas=numbers(args.alphas), seed=args.seed,
                   describe={"checkpoint": os.path.basename(args.checkpoint), "arch": args.arch,
                             "calibration": args.calibration, "select": args.select},
                   progress=not args.quiet)
    (out / "sweep.csv").write_text(result.to_csv())
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=1))
    if args.plot:
        plot_sweep(result, out / "sweep.png")
    print(result.table())
    print(f"\nwrote {out / 'sweep.jsonl'} (resumable log), sweep.csv, summary.json"
          + (", sweep.png" if args.plot else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .energy import energy_report, get_preset
    from .io.hdf5 import load

    preset = get_preset(args.preset)  # fail on a bad preset before simulating
    ann_preset = None if args.ann_preset is None else get_preset(args.ann_preset)
    model = load(args.model)
    x, y = _evaluation_images(args.samples)
    result = _simulate(model, x, args)
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
    _simulation_options(report)
    report.add_argument("--preset", default="cmos45-fp32",
                        help="energy per operation: cmos45-fp32 (default), cmos45-fp16, cmos45-int8, "
                             "cmos45-int32, loihi, truenorth, spinnaker, or a .toml/.json preset file")
    report.add_argument("--ann-preset", default=None, help="energy preset of the ANN (default: --preset)")
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


def _validate(args: argparse.Namespace) -> int:
    from .io.hdf5 import load
    from .validation import convergence, validate

    model = load(args.model)
    x, _ = _evaluation_images(args.samples)
    props = ("same_step", "next_step") if args.propagation == "both" else (args.propagation,)
    try:
        factors = [int(k) for k in args.convergence.split(",")] if args.convergence else []
    except ValueError as err:
        raise InputError(f"--convergence must be comma-separated integers such as 10,100, got "
                         f"{args.convergence!r}.") from err
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
    _simulation_options(run)
    run.add_argument("--json", action="store_true", help="print machine-readable JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    def network_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("checkpoint", help="torch checkpoint: a state_dict saved with torch.save")
        p.add_argument("--arch", required=True, help="module:name of a function or class that builds the network, "
                                                     "e.g. evsnn.training:diehl_cnn")
        p.add_argument("--arch-kwargs", default="{}", help="JSON keyword arguments for --arch (default: {})")
        p.add_argument("--input-shape", default="1,28,28", help="shape of one sample (default: 1,28,28)")
        p.add_argument("--calibration", default="0:1000",
                       help="calibration images: START:STOP of the bundled training split, or a .npy file "
                            "(default: 0:1000)")

    conv = sub.add_parser("convert", help="convert a torch checkpoint into an evsnn HDF5 model")
    network_options(conv)
    conv.add_argument("-o", "--output", required=True, help="the HDF5 file to write")
    conv.add_argument("--norm", choices=["none", "model", "data", "percentile"], default="data",
                      help="weight normalization (default: data)")
    conv.add_argument("--percentile", type=float, default=99.9, help="for --norm percentile (default: 99.9)")
    conv.add_argument("--l4-alpha", type=float, default=None, help="apply the L4-norm adjustment with this α")
    conv.add_argument("--l4-layers", choices=["first", "all"], default="first")
    conv.add_argument("--zero-bias", action="store_true", help="refuse networks with biases (Diehl's rule)")
    conv.add_argument("--neuron", choices=["if", "lif"], default="if")
    conv.add_argument("--beta", type=float, default=1.0, help="LIF leak factor per step (default: 1)")
    conv.add_argument("--threshold", type=float, default=1.0, help="threshold (default: 1, the balanced one)")
    conv.add_argument("--reset", choices=["subtract", "zero"], default="subtract")
    conv.add_argument("--readout", choices=["count", "membrane"], default="count")
    conv.add_argument("--encoding", choices=["current", "poisson", "regular"], default="current")
    conv.set_defaults(func=_convert)

    sw = sub.add_parser("sweep", help="leak x reset x (baseline, L4) sweep; threshold and alpha chosen on "
                                      "held-out training images; resumable")
    network_options(sw)
    sw.add_argument("--out", required=True, help="directory for sweep.jsonl (the resumable log), CSV, JSON, plot")
    sw.add_argument("--norm", choices=["none", "model", "data", "percentile"], default="data")
    sw.add_argument("--select", default="7000:8000", help="held-out training images for the choice "
                                                          "(default: 7000:8000)")
    sw.add_argument("--eval-samples", type=int, default=0,
                    help="run each cell's choice on this many evaluation images (default: 0, none)")
    sw.add_argument("--steps", type=int, default=75)
    sw.add_argument("--encoding", choices=["current", "poisson", "regular"], default="poisson")
    for name, values, what in (("leaks", LEAKS, "leak factors per step"), ("resets", RESETS, "reset modes"),
                               ("methods", METHODS, "conversions"), ("thresholds", THRESHOLDS, "thresholds tried"),
                               ("alphas", ALPHAS, "L4 smoothing ratios tried")):
        default = ",".join(f"{v:g}" if isinstance(v, float) else v for v in values)
        sw.add_argument(f"--{name}", default=default, help=f"comma-separated {what} (default: {default})")
    sw.add_argument("--seed", type=int, default=0, help="seed of the Poisson encoder (default: 0)")
    sw.add_argument("--plot", action="store_true", help="also write sweep.png (needs matplotlib)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=_sweep)
    _add_report_parser(sub)
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
