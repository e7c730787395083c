"""mlstm.diagnose names the porting mistake that was planted, and only that one.

Each case stores "file" inputs with one mistake in them and computes the expected outputs with
the independent float64 reference (tests/reference.py) on the inputs as they should have been;
the mistakes are undone here by hand, not by mlstm's code.
"""

import json

import numpy as np
import pytest
import reference
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

from mlstm.diagnose import diagnose
from mlstm.options import parse_options

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


def blocks(a, order):
    """Gate blocks of a 4H-row array in ``order`` (0-based MATLAB block numbers i=0, f=1, g=2, o=3)."""
    h = a.shape[0] // 4
    return np.concatenate([a[k * h : (k + 1) * h] for k in order])


def problem(C=3, H=2, B=2, T=5, seed=7):
    return dict(zip(NAMES, random_problem(np.random.default_rng(seed), C=C, H=H, B=B, T=T)))


def expected_outputs(truth, fmt="CBT", gate="sigmoid", state="tanh"):
    Y, h, c = reference_lstm(*(truth[n] for n in NAMES), fmt, gate=gate, state=state)
    return {"Y": Y, "hiddenState": h, "cellState": c}


def diagnosed(stored, expected, fmt="CBT", gate="sigmoid", state="tanh", **tolerances):
    options = parse_options([("DataFormat", fmt), ("GateActivationFunction", gate), ("StateActivationFunction", state)])
    return diagnose(stored, options, expected, **tolerances)


def assert_names(found, key):
    assert not found.given.matches
    assert [c.key for c in found.matches] == [key], [(c.key, c.excess) for c in found.matches]
    assert found.matches[0].max_rel_error < 1e-10 or key == "compute-single"


def _gate_swap(file):
    # Stored with the forget and output blocks swapped: stored order i, o, g, f.
    return dict(file, **{n: blocks(file[n], [0, 3, 2, 1]) for n in ("weights", "recurrentWeights", "bias")})


def _keras_kernel_reshaped(order, which):
    def plant(truth):
        stored = dict(truth)
        for name in which:
            rows, cols = truth[name].shape
            stored[name] = np.reshape(truth[name].T, (rows, cols), order=order)  # reshape instead of transpose
        return stored

    return plant


def _block_transposed(name):
    def plant(truth):
        h = truth["recurrentWeights"].shape[1]
        m = truth[name]
        return dict(truth, **{name: np.concatenate([m[k * h : (k + 1) * h].T for k in range(4)])})

    return plant


# key -> (how the stored inputs come from the true ones, problem sizes)
PLANTED = {
    "gates-iogf": (_gate_swap, {}),
    "gates-iofg": (  # ONNX: the file holds blocks i, o, f, c
        lambda t: dict(t, **{n: blocks(t[n], [0, 3, 1, 2]) for n in ("weights", "recurrentWeights", "bias")}),
        {},
    ),
    "gates-figo": (
        lambda t: dict(t, **{n: blocks(t[n], [1, 0, 2, 3]) for n in ("weights", "recurrentWeights", "bias")}),
        {},
    ),
    "block-transposed-recurrentWeights": (_block_transposed("recurrentWeights"), {}),
    "block-transposed-weights": (_block_transposed("weights"), {"C": 2}),
    "transposed-weights": (lambda t: dict(t, weights=t["weights"].T.copy()), {"C": 8}),
    "unreshaped-weights-F": (_keras_kernel_reshaped("F", ["weights"]), {}),
    "unreshaped-recurrentWeights-C": (_keras_kernel_reshaped("C", ["recurrentWeights"]), {}),
    "unreshaped-both-F": (_keras_kernel_reshaped("F", ["weights", "recurrentWeights"]), {}),
    "bias-x2": (lambda t: dict(t, bias=t["bias"] / 2), {}),
    "bias-half": (lambda t: dict(t, bias=t["bias"] * 2), {}),
    "bias-zero": (lambda t: dict(t, bias=t["bias"] + 0.3), {}),  # truth has no bias
    "states-swapped": (lambda t: dict(t, H0=t["C0"], C0=t["H0"]), {}),
}


@pytest.mark.parametrize("key", sorted(PLANTED))
def test_names_the_planted_weight_mistake(key):
    plant, sizes = PLANTED[key]
    truth = problem(**sizes)
    if key == "bias-zero":
        truth["bias"] = np.zeros_like(truth["bias"])
    assert_names(diagnosed(plant(truth), expected_outputs(truth)), key)


@pytest.mark.parametrize("key", ["states-zero", "H0-zero", "C0-zero"])
def test_names_zero_states(key):
    stored = problem()
    truth = dict(stored)
    if key in ("states-zero", "H0-zero"):
        truth["H0"] = np.zeros_like(stored["H0"])
    if key in ("states-zero", "C0-zero"):
        truth["C0"] = np.zeros_like(stored["C0"])
    assert_names(diagnosed(stored, expected_outputs(truth)), key)


def test_names_the_wrong_data_format():
    # B = T = 4: X (3x4x4) read as CTB is as consistent with the sizes as CBT.
    stored = problem(B=4, T=4)
    assert_names(diagnosed(stored, expected_outputs(stored, fmt="CTB")), "DataFormat=CTB")


@pytest.mark.parametrize(
    "given, used, key",
    [
        (("sigmoid", "tanh"), ("hard-sigmoid", "tanh"), "gate-hard-sigmoid"),
        (("hard-sigmoid", "tanh"), ("sigmoid", "tanh"), "gate-sigmoid"),
        (("sigmoid", "tanh"), ("keras3", "tanh"), "gate-hard-sigmoid-1/6"),
        (("hard-sigmoid", "tanh"), ("keras3", "tanh"), "gate-hard-sigmoid-1/6"),
        (("sigmoid", "tanh"), ("sigmoid", "softsign"), "state-softsign"),
        (("sigmoid", "softsign"), ("sigmoid", "tanh"), "state-tanh"),
        (("sigmoid", "tanh"), ("sigmoid", "relu"), "state-relu"),
    ],
)
def test_names_the_wrong_activation(monkeypatch, given, used, key):
    # Keras 3's hard sigmoid, relu6(x + 3) / 6, written here from its definition.
    monkeypatch.setitem(reference.GATE, "keras3", lambda x: np.minimum(np.maximum(x + 3, 0), 6) / 6)
    stored = problem(seed=11)
    stored["weights"] = stored["weights"] * 4  # gate inputs beyond +-2.5, where the slopes' clipping differs
    expected = expected_outputs(stored, gate=used[0], state=used[1])
    assert_names(diagnosed(stored, expected, gate=given[0], state=given[1]), key)


def test_names_single_precision():
    # MATLAB ran in single (single inputs) and saved the results as double.
    stored = problem(T=30)
    single = {n: a.astype(np.float32) for n, a in stored.items()}
    assert_names(diagnosed(stored, expected_outputs(single)), "compute-single")


def test_names_double_precision_under_tight_tolerances():
    stored = {n: a.astype(np.float32) for n, a in problem(T=30).items()}
    expected = expected_outputs(stored)  # float64 on the same single values
    found = diagnosed(stored, expected, rtol=1e-9, atol=1e-10)
    assert_names(found, "compute-double")


def test_long_sequences_are_screened_then_confirmed_whole():
    truth = problem(H=3, B=7, T=60, seed=3)
    stored = dict(truth, **{n: blocks(truth[n], [0, 3, 1, 2]) for n in ("weights", "recurrentWeights", "bias")})
    found = diagnosed(stored, expected_outputs(truth))
    assert_names(found, "gates-iofg")
    match = found.matches[0]
    assert (match.steps, match.observations) == (60, 7)
    assert set(match.compared) == {"Y", "hiddenState", "cellState"}
    assert "ONNX's order i, o, f, c" in found.summary()[0]


def test_inputs_as_given_and_no_match():
    stored = problem()
    found = diagnosed(stored, expected_outputs(stored))
    assert found.given.matches and found.summary()[0].startswith("expected matches mlstm on the inputs as given")
    # Two mistakes at once: no single candidate reproduces it; the closest is still reported.
    truth = _gate_swap(stored)
    truth["bias"] = truth["bias"] * 2
    found = diagnosed(stored, expected_outputs(truth))
    assert not found.matches and not found.given.matches
    lines = found.summary()
    assert lines[0].startswith("no single known mistake") and lines[1].startswith("closest: mlstm with ")
    assert found.closest is not None and found.closest.excess > 1
    # Outputs of a size nothing produces: no candidate can be compared.
    found = diagnosed(stored, {"Y": np.zeros((5, 5))})
    assert not found.matches and found.closest is None and "Y would be 2x2x5" in found.given.problem


# ---- the command line ----


def save(path, variables):
    scipy.io.savemat(path, variables, oned_as="column")
    return str(path)


def test_verify_diagnose(tmp_path):
    truth = problem(seed=5)
    stored = _gate_swap(truth)
    export = save(tmp_path / "export.mat", dict(stored, DataFormat="CBT", **expected_outputs(truth)))
    proc = run_mlstm("verify", export, "--diagnose")
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 1 and lines[0].startswith("DIFFER")
    assert "diagnose: export.mat matches mlstm with the forget and output gate blocks swapped" in lines[1]
    record = json.loads(run_mlstm("verify", export, "--diagnose", "--json").stdout.splitlines()[0])
    assert [m["key"] for m in record["diagnosis"]["matches"]] == ["gates-iogf"]
    # A file that agrees gets no diagnosis.
    good = save(tmp_path / "good.mat", dict(truth, DataFormat="CBT", **expected_outputs(truth)))
    assert "diagnose:" not in run_mlstm("verify", good, "--diagnose", check=0).stdout.decode()


def test_check_diagnose(tmp_path):
    truth = problem(seed=5)
    stored = dict(truth, bias=truth["bias"] / 2)
    inputs = save(tmp_path / "in.mat", stored)
    matlab = save(tmp_path / "matlab.mat", expected_outputs(truth))
    ours = tmp_path / "ours.mat"
    run_mlstm("run", inputs, "-o", ours, "DataFormat=CBT", check=0)
    proc = run_mlstm("check", ours, matlab, "--diagnose", "--inputs", inputs, "DataFormat=CBT")
    text = proc.stdout.decode()
    assert proc.returncode == 1 and "diagnose: " + matlab + " matches mlstm with bias doubled" in text
    # The other way round: EXPECTED is what the inputs give, so ACTUAL is the one diagnosed.
    proc = run_mlstm("check", matlab, ours, "--diagnose", "--inputs", inputs, "DataFormat=CBT", "--json")
    report = json.loads(proc.stdout)
    assert report["diagnosis"]["expected"]["given"]["matches"] is True
    assert [m["key"] for m in report["diagnosis"]["actual"]["matches"]] == ["bias-x2"]


def test_check_diagnose_errors(tmp_path):
    truth = problem()
    matlab = save(tmp_path / "matlab.mat", expected_outputs(truth))
    other = save(tmp_path / "other.mat", expected_outputs(_gate_swap(truth)))
    assert_one_line_error(run_mlstm("check", other, matlab, "--diagnose"), "--diagnose", "other.mat", "--inputs FILE")
    assert_one_line_error(run_mlstm("check", other, matlab, "DataFormat=CBT"), "only by --diagnose and --plot")
    assert_one_line_error(run_mlstm("check", other), "expected two files, ACTUAL and EXPECTED, found 1")
    assert_one_line_error(run_mlstm("check", other, matlab, "--inputs", other), "add --diagnose")
