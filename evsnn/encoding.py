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
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import AccuracyWarning, InputError
from .model import ENCODINGS, SpikingModel

__all__ = ["encode", "EncodedInput"]


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

    def spikes(self, start: int, stop: int) -> sp.csr_array:
        """Input spikes of samples ``[start, stop)``, step-major.

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
        raster = self._raster("spikes", start, stop)
        rows, n = raster.shape[0] * raster.shape[1], self.n_inputs
        flat = np.flatnonzero(raster)  # C order: sorted by row, then column
        index_dtype = np.int32 if max(flat.size, n) < 2**31 else np.int64
        indptr = np.zeros(rows + 1, dtype=index_dtype)
        np.cumsum(raster.reshape(rows, n).sum(axis=1), out=indptr[1:])
        indices = (flat % n).astype(index_dtype)
        return sp.csr_array((np.ones(flat.size), indices, indptr), shape=(rows, n))

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
        so ``enc.select(a, b).spikes(0, b - a)`` equals ``enc.spikes(a, b)``.
        """
        self._check_range("select", start, stop)
        return dataclasses.replace(self, x=self.x[start:stop], offset=self.offset + start)

    # --- internals ----------------------------------------------------------------------------
    def _check_range(self, method: str, start: object, stop: object) -> None:
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, stop))
        if not ints or not 0 <= start < stop <= self.n_samples:
            raise InputError(f"EncodedInput.{method}: (start, stop) must be integers with "
                             f"0 <= start < stop <= {self.n_samples}, got ({start!r}, {stop!r}).")

    def _raster(self, method: str, start: int, stop: int) -> np.ndarray:
        """Boolean spikes of samples ``[start, stop)``, shape (steps, B, n_inputs)."""
        self._check_range(method, start, stop)
        if not self.is_spiking:
            raise InputError(f"EncodedInput.{method}: encoding must be 'poisson' or 'regular', got 'current'. "
                             "Use current() for analog input.")
        p = np.minimum(self.x[start:stop] * self.max_rate * self.dt, 1.0)  # clipped as encode() warned
        out = np.empty((self.steps, stop - start, self.n_inputs), dtype=bool)
        if self.encoding == "poisson":
            draws = np.empty((self.steps, self.n_inputs))
            for b in range(stop - start):
                rng = np.random.default_rng([self.seed, self.offset + start + b])
                rng.random(out=draws)
                np.less(draws, p[b], out=out[:, b])
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
    encoding = spec.encoding if encoding is None else encoding
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise InputError(f"{where}: encoding must be one of {', '.join(map(repr, ENCODINGS))}, "
                         f"got {encoding!r}. Pick one of them.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"{where}: steps must be a positive integer, got {steps!r}. Pass e.g. steps=100.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"{where}: seed must be a non-negative integer, got {seed!r}. Pass e.g. seed=0.")
    max_rate = _real(spec.max_rate if max_rate is None else max_rate, "max_rate", positive=True)
    scale = _real(spec.scale if scale is None else scale, "scale", positive=False)
    flat = _check_x(x, spec.shape, encoding)

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
    return EncodedInput(encoding=encoding, steps=int(steps), dt=model.dt, max_rate=max_rate, scale=scale,
                        seed=int(seed), x=flat, input_shape=spec.shape)


def _real(value: object, name: str, *, positive: bool) -> float:
    """A finite float (and > 0 when ``positive``) for an encoder option."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > 0 or not positive)
    if not ok:
        need = "a finite number > 0" if positive else "a finite number"
        raise InputError(f"encode: {name} must be {need}, got {value!r}. "
                         f"Pass e.g. {name}={1000.0 if positive else 1.0}.")
    return v


def _check_x(x: object, shape: tuple[int, ...], encoding: str) -> np.ndarray:
    """``x`` as a read-only float64 array of shape (N, prod(shape)), validated."""
    where = "encode"
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists, objects numpy cannot convert
        raise InputError(f"{where}: x must be a numeric array, got {type(x).__name__}. "
                         "Pass a numpy array.") from err
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{where}: x must be a real numeric array, got dtype {arr.dtype}. "
                         "Convert it with np.asarray(x, dtype=float).")
    want = "(N, " + ", ".join(map(str, shape)) + ")"
    if arr.shape == shape:
        raise InputError(f"{where}: x must have shape {want} (a batch of the model's input shape {shape}), "
                         f"got {arr.shape}, a single sample. Add a batch axis, e.g. x[None].")
    if arr.shape[1:] != shape:
        raise InputError(f"{where}: x must have shape {want} (a batch of the model's input shape {shape}), "
                         f"got {arr.shape}. Reshape it to (-1, {', '.join(map(str, shape))}).")
    if arr.shape[0] == 0:
        raise InputError(f"{where}: x must hold at least one sample, got shape {arr.shape}. "
                         "Pass a non-empty batch.")
    flat = np.array(arr, dtype=np.float64, order="C", copy=True).reshape(arr.shape[0], -1)
    finite = np.isfinite(flat)
    if not finite.all():
        bad = int(flat.size - np.count_nonzero(finite))
        raise InputError(f"{where}: x must be finite, got {bad} NaN/inf value(s). "
                         "Clean the input, e.g. with np.nan_to_num(x).")
    if encoding != "current" and (flat < 0).any():
        neg = int(np.count_nonzero(flat < 0))
        raise InputError(f"{where}: x must be >= 0 for the {encoding!r} encoding (values are rates), got "
                         f"{neg} negative value(s) (min {flat.min():.4g}). Scale x to [0, 1], "
                         "e.g. (x - x.min()) / (x.max() - x.min()).")
    flat.setflags(write=False)
    return flat
