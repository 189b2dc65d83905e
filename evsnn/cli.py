"""The ``evsnn`` command: ``info``, ``run``, ``convert``, ``sweep``, ``report``, ``validate``, ``demo``.

Every subcommand checks all its arguments, input files and output paths
before it trains or simulates anything, and speaks in the flags the user
typed. A user's mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ._version import __version__
from .errors import EvsnnError, FormatError, InputError
from .settings import run_settings
from .sweep import ALPHAS, LEAKS, METHODS, RESETS, THRESHOLDS

EXIT_CODES = """exit status:
  0    success
  1    the work failed: an unreadable or damaged file, an engine error, a bug
  2    bad arguments: a value out of range, a missing or unusable file or directory, data of the wrong shape,
       a --scheduler that is malformed or does not answer
  3    validate --strict: the engines did not agree spike for spike
  130  interrupted (Ctrl-C)
set EVSNN_DEBUG=1 to see the Python traceback of an unexpected error."""

#: Library parameter names and the flags that set them, to translate library messages at the boundary.
FLAGS = {"steps": "--steps", "batch_size": "--batch-size", "max_rate": "--max-rate", "seed": "--seed",
         "threads": "--threads", "scale": "--scale", "encoding": "--encoding", "dtype": "--dtype", "x": "--data",
         "factors": "--convergence",
         "propagation": "--propagation", "preset": "--preset", "epochs": "--epochs", "out": "--out",
         "leaks": "--leaks", "resets": "--resets", "methods": "--methods", "thresholds": "--thresholds",
         "alphas": "--alphas"}
_ENCODINGS = ("current", "poisson", "regular")
_BUNDLED = "bundled MNIST evaluation images"


class _BadArgument(Exception):
    """A bad argument, file or output path: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``evsnn run: error: ... (see evsnn run --help)``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- argument types: ranges checked while parsing ----------------------------------------------------------------
def _number(cast: type, minimum: float | None = None, *, strict: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``cast`` of the text, >= (or > when ``strict``) ``minimum``, finite."""
    kind = "an integer" if cast is int else "a finite number"
    need = kind if minimum is None else f"{kind} {'>' if strict else '>='} {minimum:g}"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {need}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or (
                minimum is not None and (value <= minimum if strict else value < minimum)):
            raise argparse.ArgumentTypeError(f"must be {need}, got {text!r}")
        return value

    parse.__name__ = need
    return parse


_positive_int, _count, _positive = _number(int, 1), _number(int, 0), _number(float, 0, strict=True)


def _engine_option(text: str) -> tuple[str, str, Any]:
    """``ENGINE.KEY=VALUE``; the value is JSON when it parses as JSON, else the text itself."""
    name, dot, rest = text.partition(".")
    key, eq, value = rest.partition("=")
    if not (dot and eq and name and key.isidentifier()):
        raise argparse.ArgumentTypeError(f"must be ENGINE.KEY=VALUE, e.g. brian2.codegen=numpy, got {text!r}")
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass
    return name.lower(), key, value


# --- the run settings: one option group for run, report, validate, sweep and demo ---------------------------------
def _add_run_settings(p: argparse.ArgumentParser, *, steps: int | None = None, dtype: str = "float32",
                      only: Sequence[str] | None = None) -> None:
    """The run-settings flags (evsnn.simulate's settings, with dashes); ``steps`` is required unless given a default.

    ``only`` keeps a subset, for ``demo``, which runs with its own fixed recipe.
    """
    g = p.add_argument_group("run settings")
    flags = {
        "--steps": dict(type=_positive_int, required=steps is None, default=steps,
                        help="simulation steps" + (" (required)" if steps is None else f" (default: {steps})")),
        "--encoding": dict(choices=_ENCODINGS, default=None, help="input encoding (default: the model's)"),
        "--seed": dict(type=_count, default=0, help="random seed (default: 0)"),
        "--max-rate": dict(type=_positive, default=None, metavar="HZ",
                           help="input rate of a value of 1, Hz (default: the model's)"),
        "--scale": dict(type=_number(float), default=None, help="input current scale (default: the model's)"),
        "--dtype": dict(choices=["float32", "float64"], default=dtype, help=f"precision (default: {dtype})"),
        "--batch-size": dict(type=_positive_int, default=64, help="samples simulated together (default: 64)"),
        "--threads": dict(type=_positive_int, default=None, metavar="N",
                          help="cores a batch is split over; BLAS and torch get as many (default: all cores)"),
        "--quiet": dict(action="store_true", help="no progress bar"),
        "--engine-option": dict(type=_engine_option, action="append", default=[], metavar="ENGINE.KEY=VALUE",
                                help="an engine option, repeatable; VALUE is read as JSON if it parses, e.g. "
                                     "--engine-option brian2.codegen=numpy --engine-option event.dense_above=0.5"),
    }
    for flag, kwargs in flags.items():
        if only is None or flag in only:
            g.add_argument(flag, **kwargs)


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings of the parsed flags, checked, as keyword arguments of the library's run functions.

    The names are the library's (``options``: engine name -> options); a flag
    left unset (None) is left out, so the function's own default applies.
    """
    options: dict[str, dict[str, Any]] = {}
    for engine, key, value in args.engine_option:
        options.setdefault(engine, {})[key] = value
    settings = {"steps": args.steps, "encoding": args.encoding, "seed": args.seed, "max_rate": args.max_rate,
                "scale": args.scale, "dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads,
                "progress": not args.quiet and not getattr(args, "json", False), "options": options}
    run_settings(f"evsnn {args.command}", settings)  # the library's checks, before any work
    return {k: v for k, v in settings.items() if v is not None}


def _check_engines(args: argparse.Namespace, *used: str) -> None:
    """Every engine named (``--engine``, ``--against``, ``--engine-option``) exists and takes the options given."""
    from .engines import available_engines, get_engine

    names = available_engines()
    for flag, name in [*((f, n) for f, n in used), *(("--engine-option", e) for e, _, _ in args.engine_option)]:
        if name.lower() not in names:
            raise _BadArgument(f"{flag} {name}: no such engine; available: {', '.join(names)}.")
    for engine, key, value in args.engine_option:
        params = inspect.signature(get_engine(engine).__init__).parameters
        known = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k != "dtype")
        if key not in known:
            raise _BadArgument(f"--engine-option {engine}.{key}={value}: the {engine} engine has no option {key!r}; "
                               f"its options: {', '.join(known) or 'none'}.")


# --- files --------------------------------------------------------------------------------------------------------
def _input_file(path: str, what: str) -> str:
    from .checks import check_input_file

    try:
        return check_input_file(path, what=what)
    except InputError as err:
        raise _BadArgument(str(err)) from None


def _output_path(path: str, what: str, suffixes: Sequence[str] | None = None) -> str:
    from .checks import check_output_path

    try:
        return check_output_path(path, what=what, suffixes=suffixes)
    except InputError as err:
        raise _BadArgument(str(err)) from None


def _output_dir(path: str, what: str) -> str:
    """A directory to write into: an existing one, or a new one whose parent exists."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise _BadArgument(f"{what} {path}: exists and is not a directory.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _BadArgument(f"{what} {path}: the directory {os.path.dirname(path)} does not exist. Create it first.")
    return path


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _load_model(path: str, what: str = "MODEL", dt: float | None = None):
    """The evsnn model in ``path`` (a ``.nir`` file imported over steps of ``dt``); a torch checkpoint is pointed
    to ``evsnn convert``."""
    from .io.hdf5 import _load_isolated, load

    _input_file(path, what)
    if path.lower().endswith(".nir"):
        if dt is None:
            raise _BadArgument(f"{what} {path}: a NIR model is continuous-time; give the step to integrate it "
                               "over with --dt SECONDS, e.g. --dt 1e-3.")
        return _load_isolated(path, 60.0, nir_dt=dt)  # nir.read parses HDF5 too: in a child process
    if dt is not None:
        raise _BadArgument(f"--dt applies only to a .nir {what}; {path} carries its own dt.")
    with open(path, "rb") as f:  # a regular file (checked): reading cannot block
        head = f.read(8)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip archive, or its older pickle format
        raise _BadArgument(f"{what} {path}: is a torch checkpoint, not an evsnn model. Convert it first: "
                           f"evsnn convert {path} --arch module:name -o model.h5 (see evsnn convert --help).")
    return load(path, isolate=True)  # a crafted file can hang or crash libhdf5: parse it in a child process


def _plotting() -> None:
    """Fail now, not after simulating, when matplotlib is missing."""
    from .display import require_matplotlib

    require_matplotlib()


# --- samples ------------------------------------------------------------------------------------------------------
def _samples(args: argparse.Namespace, model, *, default: int, need_labels: bool = False):
    """``(x, y or None, description)``: ``--data`` (with ``--labels``) or the bundled evaluation images,
    the first ``--samples`` of them, checked against the model's input shape and output size."""
    from .io.datasets import load_samples, mnist_split

    if args.labels is not None and args.data is None:
        raise _BadArgument("--labels needs --data (the bundled images have their labels).")
    if args.data is None:
        data = mnist_split()
        x, y, source, start = data.x_test, data.y_test, _BUNDLED, 8000
        n = default if args.samples is None else args.samples
    else:
        _input_file(args.data, "--data")
        if args.labels is not None:
            _input_file(args.labels, "--labels")
        x, y = load_samples(args.data, labels=args.labels)
        source, start = args.data, 0
        n = len(x) if args.samples is None else args.samples
    if not 1 <= n <= len(x):
        raise _BadArgument(f"--samples must be between 1 and {len(x)} (the samples in {source}), got {n}.")
    want = tuple(model.input.shape)
    if tuple(x.shape[1:]) != want:
        where = f"--data {args.data} holds" if args.data else f"the {_BUNDLED} have"
        fix = "" if args.data else " Pass samples of that shape with --data FILE (.npy, .npz or IDX)."
        raise _BadArgument(f"{where} arrays of shape {tuple(x.shape[1:])} per sample; the model {args.model} "
                           f"expects {want}.{fix}")
    x, y = x[:n], None if y is None else y[:n]
    classes = model.population(model.output).size
    if y is not None and y.max() >= classes:
        raise _BadArgument(f"--data {args.data}: labels must be class indices below {classes} (the model's "
                           f"outputs), got {int(y.max())}.")
    if need_labels and y is None:
        raise _BadArgument(f"--data {args.data}: holds no labels, and this command measures accuracy. Pass an .npz "
                           f"with 'y', or --labels FILE.")
    description = f"{source} [{start}:{start + n}]" + ("" if y is not None else ", no labels")
    return x, y, description


def _add_scheduler(p: argparse.ArgumentParser) -> None:
    """``--scheduler``: run on Dask (docs/scaling.md)."""
    p.add_argument("--scheduler", default=None, metavar="local[:N]|tcp://HOST:PORT",
                   help="run on Dask: local starts N single-threaded worker processes on this machine (default N: "
                        "its cores) and stops them at the end; tcp://HOST:PORT is a running scheduler (needs "
                        'pip install "evsnn[dask]"; docs/scaling.md)')


def _add_model(p: argparse.ArgumentParser) -> None:
    """The model argument: an evsnn HDF5 file, or a NIR file with the step to integrate it over."""
    p.add_argument("model", metavar="MODEL", help="an evsnn HDF5 file, or a .nir file (with --dt)")
    p.add_argument("--dt", type=_positive, default=None, metavar="SECONDS",
                   help="for a .nir MODEL: the step its ODEs are integrated over (required there)")


def _add_model_and_data(p: argparse.ArgumentParser, samples_default: int, *,
                        engine_help: str = "simulation engine (default: event)") -> None:
    """The saved model to run, the engine that runs it, and the samples it runs on (run, report, validate)."""
    _add_model(p)
    p.add_argument("--engine", default="event", help=engine_help)
    p.add_argument("--data", default=None, metavar="FILE",
                   help=f"samples to run: .npy (samples only), .npz (array x, optional labels y) or an IDX file "
                        f"(default: the {_BUNDLED})")
    p.add_argument("--labels", default=None, metavar="FILE", help="labels of --data (.npy or IDX), if it has none")
    p.add_argument("--samples", type=_positive_int, default=None,
                   help=f"run the first N samples (default: all of --data, or {samples_default} bundled images)")


# --- subcommands --------------------------------------------------------------------------------------------------
def _info(args: argparse.Namespace) -> int:
    from .model import provenance_to_dict

    model = _load_model(args.model, dt=args.dt)
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


def _check_scheduler(args: argparse.Namespace) -> None:
    """``--scheduler`` is well formed and Dask is installed, before any work (the scheduler is reached later)."""
    from .cluster import parse_scheduler, require_distributed

    if args.scheduler is not None:
        try:
            parse_scheduler(args.scheduler)
        except InputError as err:
            raise _BadArgument(str(err)) from None
        require_distributed(f"--scheduler {args.scheduler}")


@contextlib.contextmanager
def _client(args: argparse.Namespace):
    """The Dask client of ``--scheduler`` (a local cluster is closed at the end), or None without it."""
    from .cluster import scheduler_client

    if args.scheduler is None:
        yield None
        return
    with scheduler_client(args.scheduler) as client:
        yield client


def _simulate(model, x, engine: str, settings: dict[str, Any], args: argparse.Namespace):
    """``evsnn.simulate`` with the run settings of the flags (:func:`_run_settings`), on ``--scheduler`` if given."""
    from .simulation import simulate

    with _client(args) as client:
        return simulate(model, x, engine=engine, client=client, **settings)


def _run(args: argparse.Namespace) -> int:
    from .result import format_summary

    _check_engines(args, ("--engine", args.engine))
    settings = _run_settings(args)
    _check_scheduler(args)
    model = _load_model(args.model, dt=args.dt)
    x, y, data = _samples(args, model, default=2000)
    result = _simulate(model, x, args.engine, settings, args)
    summary = {"model": args.model, "data": data, **result.summary(y)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .energy import energy_report, get_preset
    from .energy.plot import SUFFIXES

    _check_engines(args, ("--engine", args.engine))
    settings = _run_settings(args)
    _check_scheduler(args)
    presets = []
    for flag, name in (("--preset", args.preset), ("--ann-preset", args.ann_preset)):
        try:
            presets.append(None if name is None else get_preset(name))
        except EvsnnError as err:
            raise _BadArgument(f"{flag} {name}: {err}") from None
    if args.plot:
        _output_path(args.plot, "--plot", SUFFIXES)
        _plotting()
    if args.csv:
        _output_path(args.csv, "--csv")
    model = _load_model(args.model, dt=args.dt)
    x, y, data = _samples(args, model, default=2000)
    result = _simulate(model, x, args.engine, settings, args)
    report = energy_report(result, model, x=x, labels=y, preset=presets[0], ann_preset=presets[1],
                           sop_convention=args.sops, input_macs=args.input_macs, source=args.model, data=data)
    print(report.to_json() if args.json else report.format())
    if args.csv:
        report.to_csv(args.csv)
    if args.plot:
        report.plot(args.plot)
    for path in (args.csv, args.plot):
        if path and not args.json:
            print(f"wrote {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .validation import convergence, validate

    _check_engines(args, ("--engine", args.engine), ("--against", args.against))
    props = ("same_step", "next_step") if args.propagation == "both" else (args.propagation,)
    try:
        factors = [int(k) for k in args.convergence.split(",")] if args.convergence else []
    except ValueError:
        factors = [0]
    if any(k < 1 for k in factors):
        raise _BadArgument(f"--convergence must be comma-separated positive integers such as 10,100, got "
                           f"{args.convergence!r}.")
    settings = _run_settings(args)
    common = {**settings, "dtype": (args.dtype, "float64")}
    model = _load_model(args.model, dt=args.dt)
    x, _, data_note = _samples(args, model, default=20)
    report = validate(model, x, engines=(args.engine, args.against), propagation=props, **common)
    conv = (convergence(model, x, engine=args.engine, factors=[1, *factors], propagation=props[0], **settings)
            if factors else None)
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
    return 3 if args.strict and not report.identical else 0


def _network(args: argparse.Namespace):
    """The torch network: ``--arch`` (``module:callable``) with the weights of ``args.checkpoint``, or with
    ``--trust-pickle`` a whole pickled network (``torch.save(net)``)."""
    import importlib
    import pickle

    import torch
    from torch import nn

    _input_file(args.checkpoint, "CHECKPOINT")
    net = None
    if args.arch:
        module_name, _, attr = args.arch.partition(":")
        try:
            kwargs = json.loads(args.arch_kwargs)
        except json.JSONDecodeError as err:
            raise _BadArgument(f"--arch-kwargs must be a JSON object, got {args.arch_kwargs!r} ({err}).") from None
        if not isinstance(kwargs, dict):
            raise _BadArgument(f"--arch-kwargs must be a JSON object, got {args.arch_kwargs!r}.")
        try:
            builder = getattr(importlib.import_module(module_name), attr) if attr else None
        except (ImportError, AttributeError, ValueError) as err:
            raise _BadArgument(f"--arch {args.arch}: cannot be imported ({_shell(str(err))}).") from None
        if builder is None:
            raise _BadArgument(f"--arch must be module:name (e.g. evsnn.training:diehl_cnn), got {args.arch!r}.")
        try:
            net = builder(**kwargs)
        except TypeError as err:
            raise _BadArgument(f"--arch {args.arch} with --arch-kwargs {args.arch_kwargs}: {err}.") from None
        if not isinstance(net, nn.Module):
            raise _BadArgument(f"--arch {args.arch} must build a torch.nn.Module, got {type(net).__name__}.")
    elif not args.trust_pickle:
        raise _BadArgument("--arch is required: module:name of the function or class that builds the network "
                           "(or --trust-pickle for a checkpoint of a whole pickled network).")
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=not args.trust_pickle)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:  # torch.save(net): a class torch's weights-only reader refuses
            raise _BadArgument(
                f"CHECKPOINT {args.checkpoint}: holds pickled Python objects ({found.group(1)}; e.g. a whole network "
                "saved with torch.save(net)), and unpickling runs code from the file. Save the weights instead with "
                "torch.save(net.state_dict(), path), or pass --trust-pickle if you trust the file.") from None
        raise FormatError(f"CHECKPOINT {args.checkpoint}: is not a torch checkpoint that torch can read (damaged, "
                          "or another kind of file).") from None
    except Exception as err:  # torch raises RuntimeError, KeyError, EOFError, ... for files it cannot read
        detail = "" if isinstance(err, (KeyError, IndexError)) or not str(err) else f" ({_shell(str(err))})"
        raise FormatError(f"CHECKPOINT {args.checkpoint}: is not a torch checkpoint that torch can read{detail}.") \
            from None
    if isinstance(state, nn.Module):
        if net is None:
            return state.eval()
        state = state.state_dict()
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model_state_dict", state))
    if not isinstance(state, dict):
        raise _BadArgument(f"CHECKPOINT {args.checkpoint}: must hold a state_dict (a dict of tensors), got "
                           f"{type(state).__name__}.")
    if net is None:
        raise _BadArgument(f"CHECKPOINT {args.checkpoint}: holds weights only; --arch is required to build the "
                           "network they belong to.")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise _BadArgument(f"CHECKPOINT {args.checkpoint}: the weights do not fit --arch {args.arch}: "
                           f"{_shell(str(err))}") from None
    return net.eval()


def _images(spec: str, option: str, shape: tuple[int, ...]):
    """Samples of ``START:STOP`` of the bundled training images, or of a sample file, with their labels (or None)."""
    from .io.datasets import load_samples, mnist_split

    if re.fullmatch(r"-?\d+:-?\d+", spec):
        data = mnist_split()
        start, stop = (int(v) for v in spec.split(":"))
        if not 0 <= start < stop <= len(data.x_train):
            raise _BadArgument(f"{option} must lie within the {len(data.x_train)} bundled training images "
                               f"(0:{len(data.x_train)}), got {spec!r}.")
        x, y = data.x_train[start:stop], data.y_train[start:stop]
    else:
        _input_file(spec, option)
        x, y = load_samples(spec)
    if tuple(x.shape[1:]) != shape:
        raise _BadArgument(f"{option} {spec} holds arrays of shape {tuple(x.shape[1:])} per sample; --input-shape "
                           f"is {','.join(map(str, shape))}.")
    return x, y


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise _BadArgument(f"--input-shape must be comma-separated positive integers, e.g. 1,28,28, got {text!r}.")
    return shape


def _convert(args: argparse.Namespace) -> int:
    from .converters import convert
    from .io.hdf5 import save
    from .model import NeuronSpec

    _output_path(args.output, "-o")
    shape = _shape(args.input_shape)
    needs_data = args.norm in ("data", "percentile") or args.l4_alpha is not None
    calibration = _images(args.calibration, "--calibration", shape)[0] if needs_data else None
    neuron = NeuronSpec(kind=args.neuron, beta=args.beta, threshold=args.threshold, reset=args.reset)
    net = _network(args)
    model = convert(net, input_shape=shape, norm=args.norm, calibration=calibration,
                    percentile=args.percentile, l4_alpha=args.l4_alpha, l4_layers=args.l4_layers,
                    zero_bias=args.zero_bias, neuron=neuron, readout=args.readout, input_encoding=args.encoding)
    provenance = {**model.provenance, "checkpoint": os.path.basename(args.checkpoint), "arch": args.arch or "pickled",
                  "arch_kwargs": args.arch_kwargs, "calibration_images": args.calibration if needs_data else "none"}
    save(model.replace(provenance=provenance), args.output)
    print(f"saved {args.output}\n{model.summary()}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .converters import convert
    from .io.datasets import load_samples, mnist_split
    from .sweep import _check_grid, plot_sweep, sweep

    def numbers(flag: str, text: str, cast=float) -> list:
        try:
            return [cast(v) for v in text.split(",")]
        except ValueError:
            raise _BadArgument(f"{flag} must be comma-separated values, got {text!r}.") from None

    grid = dict(leaks=numbers("--leaks", args.leaks), resets=numbers("--resets", args.resets, str),
                methods=numbers("--methods", args.methods, str), thresholds=numbers("--thresholds", args.thresholds),
                alphas=numbers("--alphas", args.alphas))
    try:
        _check_grid(**grid)
    except InputError as err:
        raise _BadArgument(_shell(str(err))) from None
    _check_engines(args)
    kwargs = _run_settings(args)
    _check_scheduler(args)
    out = Path(_output_dir(args.out, "--out"))
    if args.plot:
        _plotting()
    shape = _shape(args.input_shape)
    calibration = _images(args.calibration, "--calibration", shape)[0]
    x_select, y_select = _images(args.select, "--select", shape)
    if y_select is None:
        raise _BadArgument(f"--select {args.select}: holds no labels; the choice of threshold and α needs them "
                           "(START:STOP of the bundled training images, or an .npz with 'y').")
    if args.data is not None:
        _input_file(args.data, "--data")
        x_eval, y_eval = load_samples(args.data)
        if y_eval is None:
            raise _BadArgument(f"--data {args.data}: holds no labels; sweep measures accuracy (an .npz with 'y').")
        if tuple(x_eval.shape[1:]) != shape:
            raise _BadArgument(f"--data {args.data} holds arrays of shape {tuple(x_eval.shape[1:])} per sample; "
                               f"--input-shape is {args.input_shape}.")
    else:
        data = mnist_split()
        x_eval, y_eval = data.x_test, data.y_test
    n = len(x_eval) if args.data is not None and args.eval_samples is None else (args.eval_samples or 0)
    if n > len(x_eval):
        raise _BadArgument(f"--eval-samples must be between 0 and {len(x_eval)}, got {n}.")
    x_eval, y_eval = (x_eval[:n], y_eval[:n]) if n else (None, None)
    net = _network(args)
    base = convert(net, input_shape=shape, norm=args.norm, calibration=calibration)
    with _client(args) as client:
        result = sweep(base, x_select=x_select, y_select=y_select, calibration=calibration, x_eval=x_eval,
                       y_eval=y_eval, log=out / "sweep.jsonl", **grid, **kwargs, client=client,
                       describe={"checkpoint": os.path.basename(args.checkpoint), "arch": args.arch,
                                 "calibration": args.calibration, "select": args.select})
    (out / "sweep.csv").write_text(result.to_csv())
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=1))
    if args.plot:
        plot_sweep(result, out / "sweep.png")
    print(result.table())
    print(f"\nwrote {out / 'sweep.jsonl'} (resumable log), sweep.csv, summary.json"
          + (", sweep.png" if args.plot else ""))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _output_path(args.out, "--out")
    run_demo(out=args.out, epochs=args.epochs, seed=args.seed, steps=args.steps, threads=args.threads,
             progress=not args.quiet)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .io.nir import write_nir

    _output_path(args.output, "OUT", (".nir",))
    model = _load_model(args.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_nir(model, args.output)
    print(f"wrote {args.output}: {len(model.populations)} populations, {len(model.projections)} projections "
          f"(dt = {model.dt:g} s)")
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from .io.hdf5 import save

    _output_path(args.output, "OUT", (".h5", ".hdf5"))
    model = _load_model(args.nir_file, "IN", dt=args.dt)
    save(model, args.output)
    print(f"wrote {args.output}")
    print(model.summary())
    return 0


def _conformance(args: argparse.Namespace) -> int:
    from .nir_conformance import FRAMEWORKS, adapter, check, format_table

    if args.framework != "all" and args.framework not in FRAMEWORKS:
        raise _BadArgument(f"--framework must be one of {', '.join(sorted(FRAMEWORKS))} or all, got "
                           f"{args.framework!r}")
    names = sorted(FRAMEWORKS) if args.framework == "all" else [args.framework]
    reports, skipped = [], []
    for name in names:
        why = adapter(name).missing()
        if why:
            if args.framework != "all":
                raise EvsnnError(f"framework {name!r} is not available: {why}")
            skipped.append(f"{name}: {why}")
            continue
        directions = ("import", "export") if args.direction == "both" else (args.direction,)
        reports.append(check(name, dt=args.dt, steps=args.steps, seed=args.seed, brian2=not args.no_brian2,
                             directions=directions))
    if args.json:
        print(json.dumps({"reports": [r.to_dict() for r in reports], "skipped": skipped}, indent=2))
        return 0
    for rep in reports:
        print(rep.to_markdown())
    if len(reports) > 1:
        print(format_table(reports))
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    return 0 if reports else 1


# --- the parser ---------------------------------------------------------------------------------------------------
def _subparser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=EXIT_CODES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="torch checkpoint: a state_dict saved with torch.save")
    p.add_argument("--arch", default=None, help="module:name of a function or class that builds the network, "
                                                "e.g. evsnn.training:diehl_cnn (required unless --trust-pickle "
                                                "loads a whole network)")
    p.add_argument("--arch-kwargs", default="{}", help="JSON keyword arguments for --arch (default: {})")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also read checkpoints of pickled Python objects, e.g. a whole network saved with "
                        "torch.save(net). Unpickling runs code from the file: only for files you trust")
    p.add_argument("--input-shape", default="1,28,28", help="shape of one sample (default: 1,28,28)")
    p.add_argument("--calibration", default="0:1000",
                   help="calibration samples: START:STOP of the bundled training images, or a .npy, .npz or IDX "
                        "file (default: 0:1000)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evsnn",
        description="Convert trained PyTorch networks to spiking networks, store them as HDF5, "
                    "inspect them and simulate them event-driven with exact synaptic-operation counts.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"evsnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    info = _subparser(sub, "info", "summarise a saved model: layers, shapes, neurons, synapses, provenance")
    _add_model(info)
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_info)

    run = _subparser(sub, "run", "simulate a saved model on the bundled MNIST evaluation images or your --data")
    _add_model_and_data(run, 2000)
    _add_run_settings(run)
    _add_scheduler(run)
    run.add_argument("--json", action="store_true", help="print machine-readable JSON")
    run.set_defaults(func=_run)

    conv = _subparser(sub, "convert", "convert a torch checkpoint into an evsnn HDF5 model")
    _network_options(conv)
    conv.add_argument("-o", "--output", required=True, help="the HDF5 file to write")
    conv.add_argument("--norm", choices=["none", "model", "data", "percentile"], default="data",
                      help="weight normalization (default: data)")
    conv.add_argument("--percentile", type=_number(float, 0, strict=True), default=99.9,
                      help="for --norm percentile (default: 99.9)")
    conv.add_argument("--l4-alpha", type=_positive, default=None, help="apply the L4-norm adjustment with this α")
    conv.add_argument("--l4-layers", choices=["first", "all"], default="first")
    conv.add_argument("--zero-bias", action="store_true", help="refuse networks with biases (Diehl's rule)")
    conv.add_argument("--neuron", choices=["if", "lif"], default="if")
    conv.add_argument("--beta", type=_positive, default=1.0, help="LIF leak factor per step (default: 1)")
    conv.add_argument("--threshold", type=_positive, default=1.0, help="threshold (default: 1, the balanced one)")
    conv.add_argument("--reset", choices=["subtract", "zero"], default="subtract")
    conv.add_argument("--readout", choices=["count", "membrane"], default="count")
    conv.add_argument("--encoding", choices=_ENCODINGS, default="current")
    conv.set_defaults(func=_convert)

    sw = _subparser(sub, "sweep", "leak x reset x (baseline, L4) sweep; threshold and alpha chosen on held-out "
                                  "training images; resumable")
    _network_options(sw)
    sw.add_argument("--out", required=True, help="directory for sweep.jsonl (the resumable log), CSV, JSON, plot")
    sw.add_argument("--norm", choices=["none", "model", "data", "percentile"], default="data")
    sw.add_argument("--select", default="7000:8000", help="held-out training samples with labels for the choice: "
                                                          "START:STOP of the bundled training images or an .npz "
                                                          "with x and y (default: 7000:8000)")
    sw.add_argument("--data", default=None, metavar="FILE",
                    help="evaluation samples with labels (.npz with x and y) instead of the bundled MNIST "
                         "evaluation images")
    sw.add_argument("--eval-samples", type=_count, default=None,
                    help="run each cell's choice on this many evaluation samples (default: all of --data, "
                         "else 0: none)")
    for name, values, what in (("leaks", LEAKS, "leak factors per step"), ("resets", RESETS, "reset modes"),
                               ("methods", METHODS, "conversions"), ("thresholds", THRESHOLDS, "thresholds tried"),
                               ("alphas", ALPHAS, "L4 smoothing ratios tried")):
        default = ",".join(f"{v:g}" if isinstance(v, float) else v for v in values)
        sw.add_argument(f"--{name}", default=default, help=f"comma-separated {what} (default: {default})")
    sw.add_argument("--plot", action="store_true", help="also write sweep.png (needs matplotlib)")
    _add_run_settings(sw)
    _add_scheduler(sw)
    sw.set_defaults(func=_sweep)

    report = _subparser(sub, "report", "simulate a saved model on the bundled MNIST evaluation images or your "
                                       "--data and report its operations and energy beside its ANN's")
    _add_model_and_data(report, 2000)
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
    _add_run_settings(report)
    _add_scheduler(report)
    report.set_defaults(func=_report)

    val = _subparser(sub, "validate", "cross-validate a saved model: an engine against the Brian2 reference, "
                                      "spike for spike, on the bundled MNIST evaluation images or your --data")
    _add_model_and_data(val, 20, engine_help="the engine under test (default: event)")
    val.add_argument("--against", default="brian2", help="the reference engine (default: brian2, run in float64)")
    val.add_argument("--propagation", choices=["same_step", "next_step", "both"], default="same_step",
                     help="delay-0 convention: spikes cross all layers in their step (same_step, default) or "
                          "one step per layer (next_step, Brian2's default schedule)")
    val.add_argument("--convergence", default=None, metavar="K,K",
                     help="also compare against Brian2 at dt/K for each K, e.g. 10,100")
    val.add_argument("--strict", action="store_true", help="exit with status 3 unless identical spike for spike")
    val.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_run_settings(val, dtype="float64")
    val.set_defaults(func=_validate)

    exp = _subparser(sub, "export", "write a saved model as a NIR graph (.nir) for other simulators and chips")
    exp.add_argument("model", metavar="MODEL", help="an evsnn HDF5 file")
    exp.add_argument("output", metavar="OUT", help="the .nir file to write")
    exp.set_defaults(func=_export)

    imp = _subparser(sub, "import", "read a NIR graph (.nir) and save it as an evsnn HDF5 model")
    imp.add_argument("nir_file", metavar="IN", help="a .nir file")
    imp.add_argument("output", metavar="OUT", help="the HDF5 file to write")
    imp.add_argument("--dt", type=_positive, required=True, metavar="SECONDS",
                     help="the step NIR's ODEs are integrated over (e.g. 1e-3)")
    imp.set_defaults(func=_import)

    conf = _subparser(sub, "conformance", "measure another framework's NIR import and export against NIR's ODEs "
                                          "(evsnn's event engine and Brian2) on reference graphs")
    conf.add_argument("--framework", required=True, metavar="NAME",
                      help="the framework to check: snntorch, norse, sinabs, spikingjelly, rockpool, or all "
                           "(every installed one)")
    conf.add_argument("--dt", type=_positive, default=1e-3, metavar="SECONDS", help="the step (default: 1e-3)")
    conf.add_argument("--steps", type=_positive_int, default=50, help="steps per input (default: 50)")
    conf.add_argument("--seed", type=_count, default=0, help="seed of weights and inputs (default: 0)")
    conf.add_argument("--direction", choices=["import", "export", "both"], default="both")
    conf.add_argument("--no-brian2", action="store_true", help="skip the Brian2 run of every case")
    conf.add_argument("--json", action="store_true", help="print machine-readable JSON")
    conf.set_defaults(func=_conformance)

    demo = _subparser(sub, "demo", "train the Diehl et al. (2015) MLP on the bundled MNIST split, convert, save "
                                   "and simulate it")
    demo.add_argument("--out", default="model.h5", help="where to save the converted model (default: model.h5)")
    demo.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (default: the tuned "
                                                                         "recipe's)")
    _add_run_settings(demo, steps=100, only=("--steps", "--seed", "--threads", "--quiet"))
    demo.set_defaults(func=_demo)
    return parser


# --- errors at the boundary ---------------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_WHERE = re.compile(r"^(?:simulate|encode|validate|convergence|sweep|energy_report|run_demo): (\w+) must")


def _shell(message: str) -> str:
    """A library message for a shell user: one line, no terminal codes, flags instead of parameter names."""
    text = " ".join(_ANSI.sub("", message).split())
    text = re.sub(r"\s*Pass e\.g\. [^.]*\.", "", text)
    match = _WHERE.match(text)
    if match and match.group(1) in FLAGS:
        text = f"{FLAGS[match.group(1)]} must" + text[match.end():]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evsnn`` console script; returns the exit status (see :data:`EXIT_CODES`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    prefix = f"evsnn {args.command}: "
    try:
        return args.func(args)
    except _BadArgument as err:
        status, message = 2, f"error: {err}"
    except InputError as err:
        status, message = 2, f"error: {_shell(str(err))}"
    except EvsnnError as err:
        status, message = 1, f"error: {_shell(str(err))}"
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        status, message = 1, f"error: {where}{_shell(err.strerror or str(err))}"
    except KeyboardInterrupt:
        status, message = 130, "interrupted"
    except Exception as err:  # a bug: one line, and the way to its traceback
        if os.environ.get("EVSNN_DEBUG"):
            raise
        status, message = 1, (f"internal error (a bug in evsnn {__version__}): {type(err).__name__}: "
                              f"{_shell(str(err))}. Run again with EVSNN_DEBUG=1 for the traceback, and please "
                              "report it.")
    print(prefix + message, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
