r"""Energy presets: picojoules per counted operation, each with its source.

A preset prices the operation classes that :mod:`evsnn.energy` counts
(:data:`OP_CLASSES`). A class a preset gives no figure for is *unpriced*
(``None``): reports show its count, leave it out of the energy total and
say so, instead of inventing a number. Energy = Σ count × cost, with the
breakdown per class. Every preset covers arithmetic (or, for the chips, the
published per-event figures) only: memory access, data movement off the
datapath and static power are not in the CMOS presets.

Built-in presets
----------------
``cmos45-fp32``, ``cmos45-fp16``, ``cmos45-int8``, ``cmos45-int32``
    45 nm CMOS at 0.9 V, after M. Horowitz, "Computing's energy problem (and
    what we can do about it)", ISSCC 2014, Digest of Technical Papers,
    pp. 10-14. Per operation: fp32 add 0.9 pJ, fp32 multiply 3.7 pJ;
    fp16 add 0.4 pJ, fp16 multiply 1.1 pJ; int8 add 0.03 pJ, int8 multiply
    0.2 pJ; int32 add 0.1 pJ, int32 multiply 3.1 pJ. A multiply-accumulate
    (MAC) costs multiply + add (fp32: 4.6 pJ), a synaptic operation (SOP)
    one add; a graded event (a value other than 0 and 1) through a synapse
    is a MAC, a spike an add. *Verification*: the fp32 and int32 figures
    were checked against their reproduction in Table 3 of PMC8934428 (which cites Horowitz 2014);
    the fp16 and int8 figures against SpikingJelly's
    ``op_counter/compute_energy.py`` (``ComputeEnergyCostConfig.fp16/int8``,
    also citing Horowitz 2014). The ISSCC paper itself was not reachable from
    here. ``cmos45-int8`` prices an accumulate as an 8-bit add (0.03 pJ), the
    common convention; accumulating into a 32-bit membrane potential would
    cost a 32-bit add (0.1 pJ): use ``cmos45-int32``'s add or a user preset.
``loihi``
    M. Davies et al., "Loihi: a neuromorphic manycore processor with on-chip
    learning", IEEE Micro 38(1):82-99, 2018, the table of energy per
    operation (pre-silicon circuit simulation of the 14 nm chip): 23.6 pJ
    per synaptic spike operation (the minimum), neuron update 81 pJ
    (active) / 52 pJ (inactive). evsnn prices every neuron update at the
    active figure, an upper bound for the neuron term (at most 81/52 = 1.56x
    too high for idle neurons); a bias is part of Loihi's compartment update
    (priced 0). Loihi has no analog multiply-accumulate: analog-input MACs,
    graded-event MACs and ANN MACs are unpriced. *Verification*: not checked
    against the paper's table here (not reachable); 23.6 pJ is the figure reproduced by
    many secondary sources, the neuron-update figures are those quoted in
    the evsnn issue. Treat them as unverified.
``truenorth``
    P. A. Merolla et al., "A million spiking-neuron integrated circuit with a
    scalable communication network and interface", Science 345(6197):668-673,
    2014: 26 pJ per synaptic event, as commonly attributed to this paper.
    *Verification*: not checked against the paper (not reachable from here);
    unverified. Neuron updates, biases and MACs are unpriced.
``spinnaker``
    T. Sharp, F. Galluppi, A. Rast and S. Furber, "Power-efficient simulation
    of detailed cortical microcircuits on SpiNNaker", Journal of Neuroscience
    Methods 210(1):110-118, 2012, abstract: "the hardware consumes 100 nJ per
    neuron per millisecond and 43 nJ per postsynaptic potential" (four
    SpiNNaker chips, whole-system power apportioned to events, real time).
    So: SOP 43,000 pJ, neuron update 100,000 pJ per neuron per 1 ms step
    (``step_s = 1e-3``; a report on a model with another ``dt`` warns),
    bias included in the update (0). *Verification*: the two figures were
    checked against the paper's abstract. The 48-chip power model of
    E. Stromatias et al., "Power analysis of large-scale, real-time neural
    networks on SpiNNaker", IJCNN 2013, could not be read here; its figures
    are not used.

User presets
------------
A TOML or JSON file, read by :func:`load_preset` (``evsnn report --preset
my_chip.toml``)::

    name = "my-chip"
    source = "measured on ..., see ..."   # required: where the numbers come from
    description = "optional one line"
    add_pj = 0.9          # optional primitives: fill every class from add / multiply
    mult_pj = 3.7
    step_s = 1e-3         # optional: the step length the update figures assume
    [costs_pj]            # optional: per-class figures, overriding the primitives
    sop = 1.2
    update_lif = 3.0

Classes left out are unpriced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import FormatError, InputError

__all__ = ["OP_CLASSES", "EnergyPreset", "PRESETS", "get_preset", "load_preset", "available_presets"]

#: The operation classes evsnn counts, with what one operation is.
OP_CLASSES: Mapping[str, str] = MappingProxyType({
    "sop": "synaptic operation: one weight accumulated into a target, per spike per synapse",
    "input_mac": "multiply-accumulate of an analog input value into the first layer",
    "graded_mac": "multiply-accumulate of a graded (non-binary) event, its value times a weight, per event per "
                  "synapse (seed 004's median spikes)",
    "update_if": "IF neuron state update, v = v + I (one add), per neuron per step",
    "update_lif": "LIF neuron state update, v = beta*v + I (one multiply-add), per neuron per step",
    "update_srm": "SRM neuron state update as evsnn's exact kernel recursion (two multiply-adds, three multiplies and "
                  "an add), per neuron per step",
    "update_cuba_lif": "current-based LIF update, v = beta*v + c*i, i = alpha*i + I (two multiply-adds and an add), "
                       "per neuron per step",
    "update_li": "leaky integrator read-out update, v = beta*v + I (one multiply-add), per neuron per step",
    "update_cuba_li": "current-based leaky integrator read-out update (as update_cuba_lif), per neuron per step",
    "update_i": "integrator read-out update, v = v + I (one add), per neuron per step",
    "update_threshold": "stateless threshold unit, compare I with theta (one add), per neuron per step",
    "bias_add": "one add of a non-zero bias into a neuron, per step",
    "ann_mac": "multiply-accumulate of the source ANN (Linear/Conv2d)",
    "ann_bias_add": "one bias add of the source ANN, per output with a non-zero bias",
})


@dataclass(frozen=True)
class EnergyPreset:
    """Energy per operation class, in picojoules, and where the figures come from.

    Parameters
    ----------
    name : str
    source : str
        Citation of the figures (printed in every report).
    costs_pj : mapping of str -> float or None
        One entry per class of :data:`OP_CLASSES`; ``None`` (or absent) means unpriced.
    description : str, optional
    step_s : float, seconds, optional
        Step length that per-step figures (neuron updates) assume, if any.
    notes : str, optional
        Caveats printed with the report (e.g. unverified figures).
    """

    name: str
    source: str
    costs_pj: Mapping[str, float | None]
    description: str = ""
    step_s: float | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        where = f"EnergyPreset {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"EnergyPreset: name must be a non-empty string, got {self.name!r}.")
        if not isinstance(self.source, str) or not self.source.strip():
            raise InputError(f"{where}: source must say where the figures come from, got {self.source!r}.")
        unknown = sorted(set(self.costs_pj) - set(OP_CLASSES))
        if unknown:
            raise InputError(f"{where}: costs_pj keys must be operation classes ({', '.join(OP_CLASSES)}), "
                             f"got {unknown}.")
        costs = {}
        for op in OP_CLASSES:
            value = self.costs_pj.get(op)
            if value is not None:
                value = _cost(value, f"{where}: costs_pj[{op!r}]")
            costs[op] = value
        object.__setattr__(self, "costs_pj", MappingProxyType(costs))
        if self.step_s is not None:
            object.__setattr__(self, "step_s", _cost(self.step_s, f"{where}: step_s", positive=True))

    @classmethod
    def from_primitives(cls, name: str, *, add: float, mult: float, source: str, **kwargs: Any) -> "EnergyPreset":
        """A CMOS-style preset: a SOP, bias add and IF update cost one add; a MAC (analog input, graded
        event, ANN) and a LIF update cost one multiply plus one add (a current-based update two MACs and an
        add); an SRM update, evsnn's exact recursion of its two kernels (``x = i + e I``, ``psp = a (psp
        + g x)``, ``i = a x``, ``r = b r``, ``v = psp + r``), two MACs, three multiplies and an add.

        Examples
        --------
        >>> p = EnergyPreset.from_primitives("x", add=0.9, mult=3.7, source="Horowitz 2014")
        >>> p.costs_pj["sop"], round(p.costs_pj["graded_mac"], 6), round(p.costs_pj["update_srm"], 6)
        (0.9, 4.6, 21.2)
        """
        overrides = dict(kwargs.pop("costs_pj", {}) or {})
        add, mult = _cost(add, f"EnergyPreset {name!r}: add"), _cost(mult, f"EnergyPreset {name!r}: mult")
        mac = add + mult
        costs = {"sop": add, "input_mac": mac, "graded_mac": mac, "update_if": add, "update_lif": mac,
                 "bias_add": add,
                 "update_cuba_lif": 2 * mac + add, "update_li": mac, "update_cuba_li": 2 * mac + add,
                 "update_srm": 2 * mac + 3 * mult + add, "update_i": add, "update_threshold": add, "ann_mac": mac,
                 "ann_bias_add": add, **overrides}
        return cls(name=name, source=source, costs_pj=costs, **kwargs)

    def cost(self, op: str) -> float | None:
        """Picojoules per operation of class ``op``, or ``None`` when unpriced."""
        if op not in OP_CLASSES:
            raise InputError(f"EnergyPreset.cost: op must be one of {', '.join(OP_CLASSES)}, got {op!r}.")
        return self.costs_pj[op]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "costs_pj": dict(self.costs_pj), "step_s": self.step_s, "notes": self.notes}


def _cost(value: object, where: str, *, positive: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (ok and math.isfinite(v) and (v > 0 if positive else v >= 0)):
        need = "a finite number > 0" if positive else "a finite number >= 0 (picojoules)"
        raise InputError(f"{where} must be {need}, got {value!r}.")
    return v


_HOROWITZ = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
             "pp. 10-14; 45 nm CMOS, 0.9 V")
_HOROWITZ_NOTE = "arithmetic only: memory access and data movement are not included"


def _builtin() -> dict[str, EnergyPreset]:
    p = [
        EnergyPreset.from_primitives(
            "cmos45-fp32", add=0.9, mult=3.7, source=_HOROWITZ + ": fp32 add 0.9 pJ, fp32 multiply 3.7 pJ",
            description="45 nm CMOS, 32-bit floating point (MAC = multiply + add = 4.6 pJ)", notes=_HOROWITZ_NOTE),
        EnergyPreset.from_primitives(
            "cmos45-fp16", add=0.4, mult=1.1, source=_HOROWITZ + ": fp16 add 0.4 pJ, fp16 multiply 1.1 pJ",
            description="45 nm CMOS, 16-bit floating point (MAC = 1.5 pJ)", notes=_HOROWITZ_NOTE),
        EnergyPreset.from_primitives(
            "cmos45-int8", add=0.03, mult=0.2, source=_HOROWITZ + ": int8 add 0.03 pJ, int8 multiply 0.2 pJ",
            description="45 nm CMOS, 8-bit integer (MAC = 0.23 pJ; accumulate as an 8-bit add)",
            notes=_HOROWITZ_NOTE + "; a 32-bit accumulator would cost 0.1 pJ per add (cmos45-int32)"),
        EnergyPreset.from_primitives(
            "cmos45-int32", add=0.1, mult=3.1, source=_HOROWITZ + ": int32 add 0.1 pJ, int32 multiply 3.1 pJ",
            description="45 nm CMOS, 32-bit integer (MAC = 3.2 pJ)", notes=_HOROWITZ_NOTE),
        EnergyPreset(
            "loihi",
            source="M. Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', "
                   "IEEE Micro 38(1):82-99, 2018, energy-per-operation table (pre-silicon simulation): "
                   "23.6 pJ per synaptic spike op (min), neuron update 81 pJ active / 52 pJ inactive",
            costs_pj={"sop": 23.6, "update_if": 81.0, "update_lif": 81.0, "bias_add": 0.0},
            description="Intel Loihi (14 nm); every neuron update priced at the active figure (upper bound)",
            notes="figures not verified against the paper here; no analog MACs on Loihi (unpriced)"),
        EnergyPreset(
            "truenorth",
            source="P. A. Merolla et al., 'A million spiking-neuron integrated circuit with a scalable "
                   "communication network and interface', Science 345(6197):668-673, 2014: "
                   "26 pJ per synaptic event (as commonly attributed)",
            costs_pj={"sop": 26.0},
            description="IBM TrueNorth (28 nm); synaptic events only",
            notes="figure not verified against the paper here; neuron updates and MACs unpriced"),
        EnergyPreset(
            "spinnaker",
            source="T. Sharp et al., 'Power-efficient simulation of detailed cortical microcircuits on "
                   "SpiNNaker', J. Neurosci. Methods 210(1):110-118, 2012, abstract: 100 nJ per neuron per "
                   "millisecond and 43 nJ per postsynaptic potential",
            costs_pj={"sop": 43_000.0, "update_if": 100_000.0, "update_lif": 100_000.0, "bias_add": 0.0},
            description="SpiNNaker (130 nm ARM cores), whole-system energy apportioned to events",
            step_s=1e-3,
            notes="includes static power apportioned to events; analog MACs unpriced"),
    ]
    return {preset.name: preset for preset in p}


#: Built-in presets by name.
PRESETS: Mapping[str, EnergyPreset] = MappingProxyType(_builtin())


def available_presets() -> tuple[str, ...]:
    """Names of the built-in presets."""
    return tuple(PRESETS)


def get_preset(preset: str | Path | EnergyPreset) -> EnergyPreset:
    """A built-in preset by name, a user preset from a ``.toml``/``.json`` file, or ``preset`` itself.

    Raises
    ------
    InputError
        For an unknown name (the message lists the built-in ones).
    FormatError
        For a preset file that cannot be read or is invalid.
    """
    if isinstance(preset, EnergyPreset):
        return preset
    text = str(preset)
    if text in PRESETS:
        return PRESETS[text]
    if text.lower().endswith((".toml", ".json")) or Path(text).exists():
        return load_preset(text)
    raise InputError(f"Energy preset {text!r} is not known; built-in presets: {', '.join(PRESETS)}. "
                     "Or give a .toml/.json preset file.")


def load_preset(path: str | Path) -> EnergyPreset:
    """Read a user preset from a TOML or JSON file (format in this module's docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FormatError(f"{path}: cannot read the energy preset file ({err.strerror or err}).") from err
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            data = _toml_loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # json/tomllib errors are ValueErrors
        raise FormatError(f"{path}: not a valid {path.suffix.lstrip('.').upper() or 'TOML'} energy preset: "
                          f"{err}") from err
    if not isinstance(data, Mapping):
        raise FormatError(f"{path}: an energy preset must be a table/object, got {type(data).__name__}.")
    allowed = {"name", "source", "description", "notes", "step_s", "add_pj", "mult_pj", "costs_pj"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise FormatError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}.")
    costs = data.get("costs_pj", {})
    if not isinstance(costs, Mapping):
        raise FormatError(f"{path}: costs_pj must be a table of operation class -> picojoules, got {costs!r}.")
    name = data.get("name", path.stem)
    kwargs = {k: data[k] for k in ("description", "notes", "step_s") if k in data}
    try:
        if ("add_pj" in data) != ("mult_pj" in data):
            raise InputError("add_pj and mult_pj must be given together (or neither).")
        if "add_pj" in data:
            return EnergyPreset.from_primitives(name, add=data["add_pj"], mult=data["mult_pj"],
                                                source=data.get("source", ""), costs_pj=dict(costs), **kwargs)
        return EnergyPreset(name=name, source=data.get("source", ""), costs_pj=dict(costs), **kwargs)
    except InputError as err:
        raise FormatError(f"{path}: {err}") from err


def _toml_loads(text: str) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as err:
            raise FormatError("Reading a TOML preset on Python 3.10 needs the 'tomli' package "
                              "(pip install tomli), or give the preset as JSON.") from err
    return tomllib.loads(text)
