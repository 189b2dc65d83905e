r"""Input encoders: analog samples -> the input every engine receives.

Three encodings (:attr:`evsnn.InputSpec.encoding`):

``current``
    The analog sample ``scale * x`` is injected into the first layer at every
    step, with no randomness. This is the usual input of SpikingJelly and
    snnTorch models, and of converted networks whose first layer computes on
    the pixels.
``poisson``
    At each step, input neuron :math:`j` of sample :math:`i` spikes with
    probability :math:`p_{ij} = x_{ij} \cdot \mathrm{max\_rate} \cdot dt`
    (rate ``x * max_rate`` Hz). Scaling the rate by ``max_rate * dt`` follows
    Diehl et al. (2015). With the defaults (1000 Hz, 1 ms) an input of 1
    spikes at every step.
``regular``
    The same rate without noise: neuron :math:`j` spikes at step :math:`t`
    (0-based) iff :math:`\lfloor (t+1)p \rfloor > \lfloor t p \rfloor`, a
    phase-0 integrate-and-fire accumulator. ``p = 1`` spikes at every step,
    ``p = 0.5`` at steps 1, 3, 5, ...; after ``T`` steps there are
    :math:`\lfloor T p \rfloor` spikes. Products are float64.

In both spike encodings ``x`` must be ``>= 0``; ``p > 1`` is clipped to 1 with
an :class:`~evsnn.errors.AccuracyWarning`, since an input neuron spikes at most
once per step.

Determinism: :func:`encode` validates the input once and returns an
:class:`EncodedInput`, which every engine reads. Sample ``i`` (its index in the
array given to :func:`encode`) draws its Poisson spikes from
``numpy.random.default_rng([seed, i])``, so its spike train depends only on
``seed``, ``i`` and its rates ``x[i] * max_rate * dt``: never on the batch it is
simulated in, on the engine, or on how often it is asked for; a run of ``T``
steps is the first ``T`` steps of a longer one.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import AccuracyWarning, InputError
from .model import SpikingModel
from .settings import RunSettings, check_samples, run_settings

__all__ = ["encode_spikes", "encode", "encode_with", "EncodedInput", "run_input"]


@dataclass(frozen=True, eq=False)
class EncodedInput:
    """Validated input of a simulation, and the spikes it encodes to.

    Build it with :func:`encode`. Spikes are produced on request, per range of
    samples, identically on every call.

    Attributes
    ----------
    encoding : {"current", "poisson", "regular"}
    steps : int
        Number of simulation steps.
    dt : float, seconds
        Step length (the model's ``dt``).
    max_rate : float, Hz
        Rate of an input of value 1 (spike encodings).
    scale : float
        Gain of the ``current`` encoding.
    seed : int
        Seed of the ``poisson`` encoding.
    x : numpy.ndarray, shape (N, n_inputs), float64
        The validated input, flattened in C order, read-only.
    input_shape : tuple of int
        Shape of one sample (the model's ``InputSpec.shape``).
    offset : int, default=0
        Index of ``x[0]`` in the input given to :func:`encode`; it seeds the
        random generator of each sample (see :meth:`select`).
    given : numpy.ndarray, optional
        Encoding ``"spikes"`` (:func:`encode_spikes`): the spike trains as
        given, bool ``(steps, N, n_inputs)``; sample ``b`` is ``given[:, b]``.
    """

    encoding: str
    steps: int
    dt: float
    max_rate: float
    scale: float
    seed: int
    x: np.ndarray = field(repr=False)
    input_shape: tuple[int, ...]
    offset: int = 0
    given: np.ndarray | None = field(default=None, repr=False)  # encoding "spikes": bool (steps, N, n_inputs)

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.x.shape[1])

    @property
    def is_spiking(self) -> bool:
        return self.encoding != "current"

    def current(self, start: int, stop: int) -> np.ndarray:
        """Analog input ``scale * x`` of samples ``[start, stop)``, injected at every step.

        Returns
        -------
        numpy.ndarray, shape (stop - start, n_inputs), float64

        Raises
        ------
        InputError
            If the encoding is a spike encoding, or the range is invalid.
        """
        self._check_range("current", start, stop)
        if self.is_spiking:
            raise InputError(f"EncodedInput.current: encoding must be 'current', got {self.encoding!r}. "
                             "Use spikes() for spike encodings.")
        return self.scale * self.x[start:stop]

    def spikes(self, start: int, stop: int, *, threads: int = 1) -> sp.csr_array:
        """Input spikes of samples ``[start, stop)``, step-major.

        ``threads`` draws the samples' Poisson spikes on that many threads (each sample has its own random
        generator, so the spikes are the same for any number).

        Returns
        -------
        scipy.sparse.csr_array, shape (steps * B, n_inputs), float64
            ``B = stop - start``; row ``t * B + b`` holds the spikes of sample
            ``start + b`` at step ``t``, so rows ``[t * B, (t + 1) * B)`` are
            the ``B x n_inputs`` spike matrix of step ``t``. Data are ones;
            column indices are sorted within rows.

        Raises
        ------
        InputError
            If the encoding is ``current``, or the range is invalid.
        """
        raster = self._raster("spikes", start, stop, threads)
        rows, n = raster.shape[0] * raster.shape[1], self.n_inputs
        flat = np.flatnonzero(raster)  # C order: sorted by row, then column
        indptr = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(raster.reshape(rows, n).sum(axis=1), out=indptr[1:])
        index_dtype = np.int32 if max(flat.size, n) < 2**31 else np.int64
        return sp.csr_array((np.ones(flat.size), (flat % n).astype(index_dtype), indptr.astype(index_dtype)),
                            shape=(rows, n))

    def raster(self, start: int, stop: int, *, threads: int = 1) -> np.ndarray:
        """The spikes of :meth:`spikes` as a dense bool array of shape (steps, stop - start, n_inputs) (what a
        timestep simulator steps through; read-only where the spikes were given)."""
        return self._raster("raster", start, stop, threads)

    def spike_events(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The spikes of :meth:`spikes` as events (NIR ``EventData`` style).

        Returns
        -------
        sample, step, neuron : numpy.ndarray of int64
            Sorted by (sample, step, neuron). ``sample`` counts from 0 in this
            EncodedInput (``start + b``); ``neuron`` is the flat input index.

        Raises
        ------
        InputError
            If the encoding is ``current``, or the range is invalid.
        """
        raster = np.ascontiguousarray(self._raster("spike_events", start, stop).transpose(1, 0, 2))
        flat = np.flatnonzero(raster).astype(np.int64)  # C order: sorted by (sample, step, neuron)
        sample, rest = np.divmod(flat, self.steps * self.n_inputs)
        step, neuron = np.divmod(rest, self.n_inputs)
        return sample + start, step, neuron

    def select(self, start: int, stop: int) -> EncodedInput:
        """Samples ``[start, stop)`` as an EncodedInput with the same spikes.

        The view keeps each sample's original index for its random generator,
        so ``enc.select(a, b).spikes(0, b - a)`` equals ``enc.spikes(a, b)``; given
        spike trains are cut to the view's samples, so a view pickles (ships to a
        Dask worker) without the others'.
        """
        self._check_range("select", start, stop)
        given = None if self.given is None else self.given[:, start:stop]
        return dataclasses.replace(self, x=self.x[start:stop], offset=self.offset + start, given=given)

    # --- internals ----------------------------------------------------------------------------
    def _check_range(self, method: str, start: object, stop: object) -> None:
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, stop))
        if not ints or not 0 <= start < stop <= self.n_samples:
            raise InputError(f"EncodedInput.{method}: (start, stop) must be integers with "
                             f"0 <= start < stop <= {self.n_samples}, got ({start!r}, {stop!r}).")

    def _raster(self, method: str, start: int, stop: int, threads: int = 1) -> np.ndarray:
        """Boolean spikes of samples ``[start, stop)``, shape (steps, B, n_inputs); Poisson samples drawn on
        ``threads`` threads (numpy's generators release the GIL while they fill an array)."""
        self._check_range(method, start, stop)
        if self.given is not None:
            return self.given[:, start:stop]
        if not self.is_spiking:
            raise InputError(f"EncodedInput.{method}: encoding must be 'poisson' or 'regular', got 'current'. "
                             "Use current() for analog input.")
        p = np.minimum(self.x[start:stop] * self.max_rate * self.dt, 1.0)  # clipped as encode() warned
        out = np.empty((self.steps, stop - start, self.n_inputs), dtype=bool)
        if self.encoding == "poisson":
            workers = max(1, min(threads, stop - start))

            def draw_every(k: int) -> None:
                """Samples k, k + workers, ...: each from its own generator, into one buffer of draws."""
                draws = np.empty((self.steps, self.n_inputs))
                for b in range(k, stop - start, workers):
                    np.random.default_rng([self.seed, self.offset + start + b]).random(out=draws)
                    np.less(draws, p[b], out=out[:, b])

            if workers == 1:
                draw_every(0)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(draw_every, range(workers)))
        else:
            before = np.zeros_like(p)  # floor(0 * p)
            for t in range(self.steps):
                after = np.floor((t + 1) * p)
                np.greater(after, before, out=out[t])
                before = after
        return out


def encode(
    model: SpikingModel,
    x: object,
    *,
    steps: int,
    encoding: str | None = None,
    seed: int = 0,
    max_rate: float | None = None,
    scale: float | None = None,
) -> EncodedInput:
    """Validate ``x`` and encode it for ``model``, once, for every engine.

    Parameters
    ----------
    model : SpikingModel
        Gives the input shape, ``dt`` and the defaults of ``encoding``,
        ``max_rate`` and ``scale`` (its :class:`~evsnn.InputSpec`).
    x : array_like, shape (N, *model.input.shape)
        A batch of samples (a single sample needs a batch axis, ``x[None]``).
        Spike encodings need ``x >= 0`` (typically in [0, 1]).
    steps : int
        Number of simulation steps, > 0.
    encoding : {"current", "poisson", "regular"}, optional
    seed : int, default=0
        Seed of the ``poisson`` encoding, >= 0.
    max_rate : float, Hz, optional
        Rate of an input of value 1, > 0.
    scale : float, optional
        Gain of the ``current`` encoding.

    Returns
    -------
    EncodedInput

    Raises
    ------
    InputError
        Wrong shape, no samples, NaN/inf, negative rates, or a bad option.

    Warns
    -----
    AccuracyWarning
        When some ``x * max_rate * dt > 1`` (clipped to one spike per step).

    Examples
    --------
    >>> import numpy as np
    >>> from evsnn import SpikingModel, InputSpec, Population, Projection, Dense
    >>> m = SpikingModel(input=InputSpec((2,)), populations=[Population("out", (1,))],
    ...                  projections=[Projection("w", "input", "out", Dense(np.ones((1, 2))))])
    >>> enc = encode(m, np.array([[1.0, 0.5]]), steps=4, encoding="regular")
    >>> enc.spikes(0, 1).toarray()
    array([[1., 0.],
           [1., 1.],
           [1., 0.],
           [1., 1.]])
    """
    where = "encode"
    spec = model.input
    settings = RunSettings(steps=steps, encoding=encoding, seed=seed, max_rate=max_rate, scale=scale, where=where)
    encoding = spec.encoding if settings.encoding is None else settings.encoding
    max_rate = spec.max_rate if settings.max_rate is None else settings.max_rate
    scale = spec.scale if settings.scale is None else settings.scale
    flat = check_samples(x, model, where=where).reshape(-1, math.prod(spec.shape))
    if encoding != "current" and (flat < 0).any():
        neg = int(np.count_nonzero(flat < 0))
        raise InputError(f"{where}: x must be >= 0 for the {encoding!r} encoding (values are rates), got "
                         f"{neg} negative value(s) (min {flat.min():.4g}). Scale x to [0, 1], "
                         "e.g. (x - x.min()) / (x.max() - x.min()).")
    flat.setflags(write=False)

    if encoding != "current":
        p = flat * max_rate * model.dt
        clipped = int(np.count_nonzero(p > 1))
        if clipped:
            warnings.warn(
                f"{where}: {clipped} of {p.size} input values give a spike probability per step "
                f"x*max_rate*dt > 1 (max {p.max():.4g}) and were clipped to 1. Lower max_rate "
                f"(now {max_rate:g} Hz) or dt (now {model.dt:g} s) so that max(x)*max_rate*dt <= 1.",
                AccuracyWarning,
                stacklevel=2,
            )
    return EncodedInput(encoding=encoding, steps=settings.steps, dt=model.dt, max_rate=max_rate, scale=scale,
                        seed=settings.seed, x=flat, input_shape=spec.shape)


def encode_spikes(model: SpikingModel, spikes: object) -> EncodedInput:
    """Spike trains given by the caller, for every engine (encoding ``"spikes"``).

    What a cross-simulator comparison needs: the identical input spikes to
    evsnn's engines and to another simulator (docs/nir.md, "Conformance").

    Parameters
    ----------
    spikes : array_like of 0/1 (or bool), shape (N, steps, *model.input.shape)

    Examples
    --------
    >>> import numpy as np
    >>> from evsnn import SpikingModel, InputSpec, Population, Projection, Dense
    >>> m = SpikingModel(input=InputSpec((2,)), populations=[Population("out", (1,))],
    ...                  projections=[Projection("w", "input", "out", Dense(np.ones((1, 2))))])
    >>> encode_spikes(m, np.array([[[1, 0], [0, 1]]])).spikes(0, 1).toarray()
    array([[1., 0.],
           [0., 1.]])
    """
    where = "encode_spikes"
    try:
        arr = np.asarray(spikes)
    except Exception as err:
        raise InputError(f"{where}: spikes must be an array, got {type(spikes).__name__}.") from err
    shape = model.input.shape
    if arr.ndim != 2 + len(shape) or arr.shape[2:] != shape or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{where}: spikes must have shape (N, steps, {', '.join(map(str, shape))}) with N, "
                         f"steps >= 1, got {arr.shape}.")
    if arr.dtype != bool and (arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all()):
        raise InputError(f"{where}: spikes must hold only 0 and 1 (one spike per input per step), got "
                         f"dtype {arr.dtype}" + ("" if arr.dtype.kind not in "biuf" else
                                                 f" with values in [{arr.min()}, {arr.max()}]") + ".")
    n, steps = arr.shape[:2]
    given = np.ascontiguousarray(arr.astype(bool).reshape(n, steps, -1).transpose(1, 0, 2))
    given.setflags(write=False)
    x = given.mean(axis=0) / (model.input.max_rate * model.dt)  # the rate each train carries, for the record
    x.setflags(write=False)
    return EncodedInput(encoding="spikes", steps=int(steps), dt=model.dt, max_rate=model.input.max_rate, scale=1.0,
                        seed=0, x=x, input_shape=shape, given=given)


def run_input(model: SpikingModel, x: object, *, where: str, **settings: Any) -> tuple[RunSettings, EncodedInput]:
    """The settings of a run and its input: ``x`` encoded with them, or ``x`` itself if already encoded.

    What :func:`~evsnn.simulate`, :func:`~evsnn.validate` and
    :func:`~evsnn.validation.convergence` do first. ``settings`` are
    :class:`~evsnn.settings.RunSettings` fields. An :class:`EncodedInput` carries
    its own steps (``steps`` may be left out, or must match) and must have been
    encoded for ``model``.
    """
    steps = settings.pop("steps", None)
    if isinstance(x, EncodedInput):
        if steps is not None and steps != x.steps:
            raise InputError(f"{where}: steps must match the encoded input's {x.steps}, got {steps}. "
                             "Leave steps out when passing an EncodedInput.")
        if x.input_shape != model.input.shape or x.dt != model.dt:
            raise InputError(
                f"{where}: the encoded input must be made for this model (input shape {model.input.shape}, "
                f"dt {model.dt:g} s), got input shape {x.input_shape} and dt {x.dt:g} s. "
                "Encode it with evsnn.encoding.encode(model, ...)."
            )
        return run_settings(where, {**settings, "steps": x.steps}), x
    run = run_settings(where, {**settings, "steps": steps})
    return run, encode_with(model, x, run)


def encode_with(model: SpikingModel, x: object, settings: RunSettings) -> EncodedInput:
    """:func:`encode` with the encoder fields of ``settings``."""
    return encode(model, x, steps=settings.steps, encoding=settings.encoding, seed=settings.seed,
                  max_rate=settings.max_rate, scale=settings.scale)
