"""Design rules (nirbridge.profile.rules) and layer splitting (nirbridge.profile.split).

Every expected figure is computed by hand in the comments (limits chosen small through a
profile copy so that the graphs stay tiny); Speck's memory formula is compared with
sinabs' own ``DynapcnnLayer.memory_summary``.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from nirbridge import write
from nirbridge.cli import main
from nirbridge.profile import PROFILES_DIR, map_to_chip
from nirbridge.profile.rules import check_graph


def _lif(shape):
    shape = tuple(np.atleast_1d(shape))
    return nir.LIF(tau=np.full(shape, 1e-2), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def _graph(nodes, edges, dt=1e-3):
    g = nir.NIRGraph(nodes=nodes, edges=edges)
    g.metadata = {"dt": dt}
    return g


def _dense(w, out_neurons=True):
    w = np.asarray(w, dtype=np.float64)
    n_out, n_in = w.shape
    nodes = {"in": nir.Input(np.array([n_in])), "fc": nir.Affine(w, np.zeros(n_out)),
             "lif": _lif(n_out), "out": nir.Output(np.array([n_out]))}
    return _graph(nodes, [("in", "fc"), ("fc", "lif"), ("lif", "out")])


def _mlp(sizes):
    rng = np.random.default_rng(0)
    nodes = {"in": nir.Input(np.array([sizes[0]]))}
    edges, prev = [], "in"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        nodes[f"fc{i}"] = nir.Affine(rng.uniform(0.5, 1.0, size=(b, a)), np.zeros(b))
        nodes[f"lif{i}"] = _lif(b)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["out"] = nir.Output(np.array([sizes[-1]]))
    return _graph(nodes, edges + [(prev, "out")])


def _conv(cin, cout, hw, k=3, pad=None, kw=None):
    w = np.ones((cout, cin, k, kw or k))
    pad = (k // 2) if pad is None else pad
    c = nir.Conv2d(input_shape=(hw, hw), weight=w, stride=1, padding=pad, dilation=1,
                   groups=1, bias=np.zeros(cout))
    ho = hw + 2 * pad - k + 1
    wo = hw + 2 * pad - (kw or k) + 1
    sh = (cout, ho, wo)
    return _graph({"in": nir.Input(np.array([cin, hw, hw])), "conv": c, "lif": _lif(sh),
                   "out": nir.Output(np.array(sh))},
                  [("in", "conv"), ("conv", "lif"), ("lif", "out")])


@pytest.fixture
def small_core(tmp_path):
    """Loihi's profile with small per-core limits: 8 neurons, 64 B, 16 input axons, 4
    cores per chip, 8-bit weights."""
    text = (PROFILES_DIR / "loihi.toml").read_text()
    for key, val in (("neurons_per_core", 8), ("synapse_memory_bytes_per_core", 64),
                     ("input_axons_per_core", 16), ("output_axons_per_core", 4096),
                     ("cores_per_chip", 4)):
        start = text.index(f"\n{key} = {{ value = ") + len(f"\n{key} = {{ value = ")
        end = text.index(",", start)
        text = text[:start] + str(val) + text[end:]
    path = tmp_path / "small.toml"
    path.write_text(text.replace('name = "loihi"', 'name = "small"', 1))
    return path


# ------------------------------------------------------------- Loihi-style cores, split
def test_dense_split_by_neurons_and_memory(small_core):
    # 20 neurons × 10 inputs, all weights non-zero: 10 B per neuron at 8 bits.
    # ≤ 8 neurons and ≤ 64 B per core → ≤ 6 neurons; chunk lengths ceil(20/k) ≤ 6: 5
    # → 4 cores of 5 neurons, 50 B and 10 input axons each.
    g = _dense(np.ones((20, 10)))
    m = map_to_chip(g, small_core)
    sp = m.layers[0].split
    assert (sp["cores"], sp["neurons_per_core"], sp["input_axons_per_core"]) == (4, 5, 10)
    assert sp["synapse_memory_bytes_per_core"] == 50
    assert m.layers[0].binding == "synapse_memory_bytes_per_core"
    assert check_graph(g, small_core).fits
    assert any("split by output neurons into 4 cores" in n for n in m.layers[0].notes)


def test_dense_fan_in_just_under_and_over(small_core):
    # 2 neurons: 16 inputs = 16 axons fits; 17 inputs break 16 axons per core (and 34 B
    # per core is under 64 B, so splitting cannot help: every core reads all 17)
    assert check_graph(_dense(np.ones((2, 16))), small_core).fits
    r = check_graph(_dense(np.ones((2, 17))), small_core)
    assert not r.fits and len(r.violations) == 1
    line = r.violations[0].line()
    assert line.startswith("small: layer 'lif (fc)': input axons per core 17 > 16")
    assert "reduce the fan-in to ≤ 16" in line and "\n" not in line


def test_sparse_dense_split_counts_exact_axons(small_core):
    # block-diagonal 8 × 32: rows 0-3 read columns 0-15, rows 4-7 columns 16-31.
    # One core of 8 neurons would read 32 axons > 16; two cores of 4 read 16 each.
    w = np.zeros((8, 32))
    w[:4, :16] = 0.1
    w[4:, 16:] = 0.1
    # memory: 16 synapses per neuron = 16 B; 4 neurons = 64 B ≤ 64
    m = map_to_chip(_dense(w), small_core)
    sp = m.layers[0].split
    assert (sp["cores"], sp["neurons_per_core"], sp["input_axons_per_core"]) == (2, 4, 16)
    assert sp["min_input_axons"] == 16 and m.fits


def test_chip_cores_just_under_and_over(small_core):
    # 32 neurons × 1 input → 4 cores of 8 = the chip's 4; 33 neurons → 5 cores > 4
    assert check_graph(_dense(np.ones((32, 1))), small_core).fits
    r = check_graph(_dense(np.ones((33, 1))), small_core)
    assert [v.limit for v in r.violations] == ["cores per chip"]
    assert r.violations[0].line() == ("small: layer 'network': cores per chip 5 > 4: the "
                                      "network needs 2 chips; reduce the layers' sizes or "
                                      "map it on a multi-chip system")


def test_conv_split_into_tiles_hand_count(tmp_path):
    # conv 2 → 4 channels, 3×3, pad 1, 8×8: 256 neurons, ≤ 64 per core → ≥ 4 cores.
    # Tiles of 64 neurons: 4 ch × 2×8 reads 2·4·8 = 64 inputs (rows (2−1)+3 = 4, the
    # full 8 columns), 4 × 4×4 reads 2·6·6 = 72, 1 × 8×8 reads 2·8·8 = 128: the first wins.
    text = (PROFILES_DIR / "loihi.toml").read_text().replace(
        "neurons_per_core = { value = 1024,", "neurons_per_core = { value = 64,")
    prof = tmp_path / "p64.toml"
    prof.write_text(text)
    m = map_to_chip(_conv(2, 4, 8), prof)
    sp = m.layers[0].split
    assert sp["by"] == "output tiles" and sp["cores"] == 4 and sp["neurons_per_core"] == 64
    assert sp["input_axons_per_core"] == 64 and sorted(sp["tile"][1:]) == [2, 8]
    assert sp["min_input_axons"] == 2 * 3 * 3
    # synapses: 4 out ch × 2 in ch × (Σ valid taps per axis)² = 8 · 22² = 3872;
    # 3872 B / 256 neurons · 64 neurons per core = 968 B
    assert m.layers[0].synapses == 3872 and sp["synapse_memory_bytes_per_core"] == 968


def test_conv_512x3x3_against_4096_axons():
    # one output neuron reads 512·3·3 = 4608 > 4096 input axons (Loihi 2, assumed):
    # no split helps; 455·9 = 4095 ≤ 4096 maps (split into tiles)
    r = check_graph(_conv(512, 1, 4), "loihi2")
    assert not r.fits
    ax = [v for v in r.violations if v.limit == "input axons per core"]
    assert len(ax) == 1 and ax[0].value == 4608 and ax[0].cap == 4096 and ax[0].assumed
    assert "reads 512×3×3 inputs" in ax[0].line() and "≤ 455" in ax[0].line()
    ok = check_graph(_conv(455, 1, 4), "loihi2")
    assert ok.fits and ok.mapping.layers[0].split["min_input_axons"] == 4095


def test_loihi2_delay_limit():
    def delayed(steps):
        return _graph({"in": nir.Input(np.array([3])), "d": nir.Delay(np.full(3, steps * 1e-3)),
                       "fc": nir.Affine(np.eye(3), np.zeros(3)), "lif": _lif(3),
                       "out": nir.Output(np.array([3]))},
                      [("in", "d"), ("d", "fc"), ("fc", "lif"), ("lif", "out")])

    assert check_graph(delayed(62), "loihi2", dt=1e-3).fits
    r = check_graph(delayed(63), "loihi2", dt=1e-3)
    assert [v.line() for v in r.violations] == [
        "loihi2: layer 'd': delay steps 63 > 62: at dt = 0.001; shorten the delay to ≤ 62 "
        "steps, raise dt, or relay it through neurons"]
    assert check_graph(delayed(63), "loihi2").unchecked[-1].startswith("max_delay_steps")


def test_weight_precision_warning():
    # 8 bits: half a step of max|w| = 1 is 1/254 = 0.003937; 0.003 rounds to 0, 0.004 not
    r = check_graph(_dense([[1.0, 0.003, 0.004, 0.5]]), "loihi2")
    assert r.fits and len(r.warnings) == 1
    assert r.warnings[0].value == "1 of 4 non-zero"
    assert r.lines()[-1].startswith("warning: loihi2: layer 'fc': weights lost at 8 bits")


# ------------------------------------------------------------------------------ Speck
@pytest.fixture
def dynapcnn_layer():
    """sinabs 3.1.3's ``backend/dynapcnn/dynapcnn_layer.py`` itself. The package's
    ``__init__`` imports samna (SynSense's closed device library, not installable here)
    through ``dynapcnn_network``; the layer module needs only torch and sinabs, so it is
    imported under a bare package entry, removed again afterwards."""
    import importlib
    import sys
    import types
    from pathlib import Path

    import sinabs.backend

    name = "sinabs.backend.dynapcnn"
    added = [n for n in (name, f"{name}.dynapcnn_layer", f"{name}.discretize")
             if n not in sys.modules]
    if name in added:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(Path(sinabs.backend.__file__).parent / "dynapcnn")]
        sys.modules[name] = pkg
    try:
        yield importlib.import_module(f"{name}.dynapcnn_layer")
    finally:
        for n in added:
            sys.modules.pop(n, None)


@pytest.mark.parametrize("cin,cout,k,hw,pad", [(2, 8, 3, 32, 1), (3, 17, 5, 20, 0),
                                               (16, 64, 1, 7, 0), (5, 100, 4, 9, 1)])
def test_speck_memory_equals_sinabs(cin, cout, k, hw, pad, dynapcnn_layer):
    import torch
    from sinabs.layers import IAFSqueeze

    DynapcnnLayer = dynapcnn_layer.DynapcnnLayer
    conv = torch.nn.Conv2d(cin, cout, k, padding=pad, bias=False)
    layer = DynapcnnLayer(conv, IAFSqueeze(batch_size=1), (cin, hw, hw), pool=[[1, 1]],
                          discretize=False)
    theirs = layer.memory_summary()
    g = _conv(cin, cout, hw, k=k, pad=pad)
    u = map_to_chip(g, "speck").layers[0].usage
    assert u["kernel_memory_per_core"]["need"] == int(theirs["kernel"])
    assert u["neuron_memory_per_core"]["need"] == int(theirs["neuron"])


def test_speck_limits_just_under_and_over():
    # 1024 features of a 1×1 kernel on a 1×1 input: kernel memory 1·2^(0+10) = 1024 and
    # neuron memory 1024·2^0 = 1024 fit every core; 1025 features break max_features
    assert check_graph(_conv(1, 1024, 1, k=1, pad=0), "speck").fits
    r = check_graph(_conv(1, 1025, 1, k=1, pad=0), "speck")
    assert [v.limit for v in r.violations] == ["max features"]
    assert "1025 > 1024" in r.violations[0].line()
    assert check_graph(_conv(1, 2, 20, k=16, pad=0), "speck").fits
    over = check_graph(_conv(1, 2, 20, k=17, pad=0), "speck")
    assert [v.limit for v in over.violations] == ["max kernel"]
    # nir 1.0.8 infers a rectangular kernel's output as if it were square (6×6 here,
    # not 6×4): the neurons take the shape nir infers
    c = nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 1, 3, 5)), stride=1, padding=0,
                   dilation=1, groups=1, bias=np.zeros(2))
    sh = tuple(int(v) for v in c.output_type["output"])
    rect = check_graph(_graph({"in": nir.Input(np.array([1, 8, 8])), "conv": c,
                               "lif": _lif(sh), "out": nir.Output(np.array(sh))},
                              [("in", "conv"), ("conv", "lif"), ("lif", "out")]), "speck")
    assert "kernel shape" in [v.limit for v in rect.violations]


# ------------------------------------------------------------------------------- Xylo
def test_xylo_limits_just_under_and_over():
    assert check_graph(_mlp([16, 1000, 8]), "xylo-audio2").fits
    for sizes, limit in (([17, 10, 8], "input channels per chip"),
                         ([16, 1001, 8], "neurons per chip"),
                         ([16, 10, 9], "output neurons per chip")):
        r = check_graph(_mlp(sizes), "xylo-audio2")
        assert [v.limit for v in r.violations] == [limit], sizes
    one = check_graph(_mlp([4, 2]), "xylo-audio2")
    assert "neuron layers" in [v.limit for v in one.violations]


def test_xylo_consecutive_weights_refused():
    g = _mlp([4, 6, 2])
    g.nodes["fc0b"] = nir.Affine(np.ones((6, 6)), np.zeros(6))
    g.edges = [e for e in g.edges if e != ("fc0", "lif0")] + [("fc0", "fc0b"),
                                                              ("fc0b", "lif0")]
    r = check_graph(g, "xylo-audio2")
    assert any(v.limit == "consecutive weights" and v.layer == "fc0b" for v in r.violations)


# -------------------------------------------------------------------------------- CLI
def test_cli_check_exit_codes_and_lines(tmp_path, capsys):
    good, bad = tmp_path / "good.nir", tmp_path / "bad.nir"
    write(good, _mlp([16, 20, 4]))
    write(bad, _mlp([17, 1001, 9]))
    assert main(["check", str(good), "--target", "xylo-audio2", "--target", "loihi2"]) == 0
    out = capsys.readouterr().out
    assert "xylo-audio2: fits" in out and "loihi2: fits" in out
    js = tmp_path / "r.json"
    assert main(["check", str(bad), "--target", "xylo-audio2", "--json", str(js)]) == 3
    cap = capsys.readouterr()
    lines = [s.strip() for s in cap.out.splitlines() if s.strip().startswith("xylo-audio2:")]
    assert len(lines) == 1 + 3  # the summary line, then one per violation
    assert "3 design-rule violation(s)" in cap.err
    doc = json.loads(js.read_text())
    assert doc["fits"] is False and len(doc["targets"][0]["violations"]) == 3
    assert main(["check", str(tmp_path / "missing.nir")]) == 2
    assert main(["check", str(good), "--target", "cmos45-fp32"]) == 2


def test_deploy_refuses_a_graph_that_breaks_loihi2_rules(tmp_path, capsys):
    f = tmp_path / "wide.nir"
    write(f, _dense(np.ones((2, 4097))))  # fan-in 4097 > 4096 input axons per core
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 4097)))
    assert main(["deploy", str(f), "--input", str(x)]) == 3
    cap = capsys.readouterr()
    assert "loihi2: layer 'lif (fc)': input axons per core 4097 > 4096" in cap.out
    assert "does not fit loihi2" in cap.err
