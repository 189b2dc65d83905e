"""Test models that use every IR feature, and a hypothesis strategy over random IRs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from evsnn import Conv2d, Dense, InputSpec, NeuronSpec, Population, Projection, Sparse, SpikingModel
from evsnn.ops import conv2d_output_shape


def make_mlp(dtype=np.float32, seed=0) -> SpikingModel:
    """784-32-10 bias-free IF network, as the converter makes it."""
    rng = np.random.default_rng(seed)
    return SpikingModel(
        input=InputSpec((1, 28, 28)),
        populations=[Population("fc1", (32,)), Population("fc2", (10,))],
        projections=[
            Projection("fc1", "input", "fc1", Dense(rng.standard_normal((32, 784)).astype(dtype))),
            Projection("fc2", "fc1", "fc2", Dense(rng.standard_normal((10, 32)).astype(dtype))),
        ],
        provenance={"converter": "test", "seed": seed},
    )


def make_everything(dtype=np.float64) -> SpikingModel:
    """One model with every IR feature: conv, dense, sparse, LIF/SRM, per-neuron threshold, bias,
    hard reset, delays, a residual add and a recurrent delayed edge, membrane readout, provenance."""
    rng = np.random.default_rng(1)
    f = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    conv = Conv2d(f(3, 2, 3, 3), input_shape=(2, 7, 7), stride=2, padding=1)  # -> (3, 4, 4)
    skip = rng.standard_normal((16, 98)) * (rng.random((16, 98)) < 0.3)
    return SpikingModel(
        input=InputSpec((2, 7, 7), encoding="poisson", max_rate=250.0),
        populations=[
            Population("conv1", (3, 4, 4), NeuronSpec("lif", threshold=f(3, 4, 4) ** 2 + 0.1, beta=0.95),
                       bias=f(3, 4, 4)),
            Population("fc1", (16,), NeuronSpec("if", reset="zero", v_reset=-0.25, v_init_fraction=0.5)),
            Population("out", (5,), NeuronSpec("srm", threshold=0.75, tau_syn=5e-3, tau_refr=2e-3)),
        ],
        projections=[
            Projection("conv1", "input", "conv1", conv),
            Projection("fc1", "conv1", "fc1", Dense(f(16, 48))),
            Projection("skip", "input", "fc1", Sparse.from_matrix(skip.astype(dtype)), delay=2),
            Projection("out", "fc1", "out", Dense(f(5, 16))),
            Projection("recurrent", "out", "fc1", Dense(f(16, 5)), delay=1),
        ],
        readout="membrane",
        dt=5e-4,
        provenance={"normalization": {"method": "data", "factors": f(3), "percentile": 99.9},
                    "calibration_size": 1000, "notes": ["a", 1, 2.5, None, True], "flag": False},
    )


def make_nir_neurons(dtype=np.float64, out="cuba_li") -> SpikingModel:
    """Every neuron kind and field that populations gained for NIR (population encoding-version 1.1.0), most of
    them per neuron: an ODE-form CubaLIF with every field an array, ODE-form LIF and IF, a discrete LIF with
    per-neuron beta, v_reset and v_leak, a Threshold, and the non-spiking read-out ``out`` ("li", "cuba_li", "i")."""
    rng = np.random.default_rng(2)
    n = 4
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(dtype)  # noqa: E731
    tau = lambda: u(2e-3, 2e-2)  # noqa: E731
    readouts = {"li": NeuronSpec("li", tau_mem=tau(), r=u(0.5, 2), v_leak=u(-0.5, 0.5)),
                "cuba_li": NeuronSpec("cuba_li", tau_mem=tau(), tau_syn=tau(), r=u(0.5, 2), v_leak=u(-0.5, 0.5),
                                      w_in=u(0.5, 2)),
                "i": NeuronSpec("i", r=u(0.5, 2))}
    pops = [
        Population("cuba", (n,), NeuronSpec("cuba_lif", threshold=u(0.5, 1.5), reset="zero", v_reset=u(-0.5, 0),
                                            tau_syn=tau(), tau_mem=tau(), r=u(0.5, 2), v_leak=u(-0.5, 0.5),
                                            w_in=u(0.5, 2), strict_threshold=True, v_init_fraction=0.25)),
        Population("lif_ode", (n,), NeuronSpec("lif", threshold=1.25, tau_mem=0.01, r=2.0, v_leak=0.1,
                                               strict_threshold=True)),
        Population("if_ode", (n,), NeuronSpec("if", r=u(0.5, 2), reset="zero", v_reset=-0.5), bias=u(-0.1, 0.1)),
        Population("lif_leak", (n,), NeuronSpec("lif", beta=u(0.5, 1), reset="zero", v_reset=u(-0.5, 0),
                                                v_leak=u(-0.2, 0.2))),
        Population("step", (n,), NeuronSpec("threshold", threshold=u(0.5, 1.5), strict_threshold=True)),
        Population("out", (n,), readouts[out]),
    ]
    names = ["input", *(p.name for p in pops)]
    return SpikingModel(
        input=InputSpec((n,)),
        populations=pops,
        projections=[Projection(f"to_{b}", a, b, Dense(rng.standard_normal((n, n)).astype(dtype)))
                     for a, b in zip(names, names[1:])],
        readout="membrane",
        dt=1e-3,
    )


# --- hypothesis: random IRs of every feature -------------------------------------------------
FLOATS = st.sampled_from([np.float32, np.float64])


@st.composite
def arrays(draw, shape, dtype=None, positive=False):
    dtype = dtype or draw(FLOATS)
    seed = draw(st.integers(0, 2**32 - 1))
    a = np.random.default_rng(seed).standard_normal(shape)
    if draw(st.booleans()):  # some exact zeros (pruned synapses)
        a[np.random.default_rng(seed + 1).random(shape) < 0.3] = 0.0
    return (np.abs(a) + 0.05 if positive else a).astype(dtype)


#: (kind, ODE form) of spiking neurons, and of the non-spiking read-outs (only an output with readout="membrane").
SPIKING_FORMS = [("if", False), ("lif", False), ("srm", False), ("threshold", False), ("if", True), ("lif", True),
                 ("cuba_lif", True)]
READOUT_FORMS = [("li", True), ("cuba_li", True), ("i", True)]


@st.composite
def neurons(draw, shape, readout=False):
    """Any neuron of either form; each per-neuron field a number or an array of ``shape``."""
    kind, ode = draw(st.sampled_from(SPIKING_FORMS + (READOUT_FORMS if readout else [])))

    def value(lo, hi, positive=False):
        return draw(st.one_of(st.floats(lo, hi), arrays(shape, positive=positive)))

    kw = {"threshold": value(0.01, 10.0, positive=True), "reset": draw(st.sampled_from(["subtract", "zero"])),
          "v_reset": value(-1, 0.5), "v_init_fraction": draw(st.floats(0, 1)),
          "strict_threshold": draw(st.booleans())}
    if draw(st.booleans()):
        kw["v_leak"] = value(-1, 1)
    if kind == "lif" and not ode:
        beta = value(0.05, 1.0, positive=True)
        kw["beta"] = np.minimum(beta, 1).astype(beta.dtype) if isinstance(beta, np.ndarray) else beta
    if kind == "srm":
        kw["tau_syn"] = draw(st.floats(1e-4, 0.1))
        kw["tau_refr"] = draw(st.floats(1e-4, 0.1))
    if ode:
        kw["r"] = value(-10, 10)
    if ode and kind in ("lif", "cuba_lif", "li", "cuba_li"):
        kw["tau_mem"] = value(1e-4, 0.1, positive=True)
    if kind.startswith("cuba"):
        kw["tau_syn"] = value(1e-4, 0.1, positive=True)
        kw["w_in"] = value(-5, 5)
    return NeuronSpec(kind, **kw)


JSONABLE = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)
KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_ -]{0,7}", fullmatch=True)
PROVENANCE = st.recursive(
    st.dictionaries(KEYS, JSONABLE | arrays((3,)), max_size=4),
    lambda inner: st.dictionaries(KEYS, inner | JSONABLE, max_size=3),
    max_leaves=8,
)


@st.composite
def models(draw):
    """Random valid SpikingModels: conv/dense/sparse ops, any neuron, delays, residual adds."""
    c, h = draw(st.integers(1, 3)), draw(st.integers(3, 8))
    shapes = {"input": (c, h, h)}
    pops, projs = [], []
    prev = "input"
    readout = draw(st.sampled_from(["count", "membrane"]))
    n_pops = draw(st.integers(1, 3))
    for i in range(n_pops):
        src = shapes[prev]
        name = f"p{i}"
        op_kind = draw(st.sampled_from(["conv2d", "dense", "sparse"] if len(src) == 3 else ["dense", "sparse"]))
        if op_kind == "conv2d":
            k, s, p = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
            k = min(k, src[1] + 2 * p)
            oh, ow = conv2d_output_shape(src, (k, k), (s, s), (p, p))
            shape = (draw(st.integers(1, 3)), oh, ow)
            op = Conv2d(draw(arrays((shape[0], src[0], k, k))), src, stride=s, padding=p)
        else:
            shape = (draw(st.integers(1, 12)),)
            w = draw(arrays((shape[0], int(np.prod(src)))))
            op = Dense(w) if op_kind == "dense" else Sparse.from_matrix(np.where(w > 0.5, w, 0))
        bias = draw(st.none() | arrays(shape))
        last = i == n_pops - 1 and readout == "membrane"  # only there may a population not spike
        pops.append(Population(name, shape, draw(neurons(shape, readout=last)), bias=bias))
        projs.append(Projection(f"w{i}", prev, name, op, delay=draw(st.integers(0, 3))))
        shapes[name] = shape
        prev = name
    if draw(st.booleans()):  # a residual add from the input, or a recurrent delayed edge
        src = draw(st.sampled_from(list(shapes)))
        delay = draw(st.integers(1, 2)) if src != "input" else 0
        n_src = int(np.prod(shapes[src]))
        w = draw(arrays((int(np.prod(shapes[prev])), n_src)))
        projs.append(Projection("extra", src, prev, Sparse.from_matrix(w), delay=delay))
    return SpikingModel(
        input=InputSpec(shapes["input"], encoding=draw(st.sampled_from(["current", "poisson", "regular"])),
                        max_rate=draw(st.floats(1.0, 1e4)), scale=draw(st.floats(-10, 10))),
        populations=pops,
        projections=projs,
        readout=readout,
        dt=draw(st.floats(1e-6, 1.0)),
        provenance=draw(PROVENANCE),
    )
