"""The command line as a user drives it: a real ``python -m mlstm`` subprocess."""

import os

import numpy as np
import pytest
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

EXAMPLE = os.path.join(REPO, "fixtures", "example", "input.mat")
NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


def save(path, **variables):
    scipy.io.savemat(path, variables, oned_as="column")
    return str(path)


@pytest.fixture
def problem(rng):
    return dict(zip(NAMES, random_problem(rng, C=3, H=2, B=4, T=5)))


@pytest.fixture
def infile(tmp_path, problem):
    return save(tmp_path / "in.mat", **problem)


def load(path):
    return scipy.io.loadmat(path, squeeze_me=False)


def test_example_in_readme(tmp_path):
    out = tmp_path / "out.mat"
    run_mlstm("run", EXAMPLE, "-o", out, check=0)
    got = load(out)
    src = load(EXAMPLE)
    Yr, hr, cr = reference_lstm(*(src[n] for n in NAMES), str(src["DataFormat"][0]))
    assert got["Y"].shape == (3, 32, 64) and got["hiddenState"].shape == (3, 32)
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["hiddenState"], hr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["cellState"], cr, rtol=1e-12, atol=1e-14)
    assert str(got["YFormat"][0]) == "CBT"


def test_name_value_anywhere_prefix_and_case(tmp_path, infile, problem):
    out = tmp_path / "o.mat"
    run_mlstm("run", "dataf=cbt", infile, "-o", out, "STATEACT=SoftSign", "Gate=hard-sigmoid", check=0)
    Yr, hr, cr = reference_lstm(*problem.values(), "CBT", gate="hard-sigmoid", state="softsign")
    got = load(out)
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["cellState"], cr, rtol=1e-12, atol=1e-14)


def test_dataformat_variable_in_file_and_command_line_wins(tmp_path, problem):
    p = dict(problem)
    p["X"] = np.transpose(p["X"], (2, 0, 1))  # T x C x B
    infile = save(tmp_path / "in.mat", DataFormat="TCB", **p)
    out = tmp_path / "o.mat"
    run_mlstm("run", infile, "-o", out, check=0)
    got = load(out)
    Yr, _, _ = reference_lstm(*p.values(), "TCB")
    assert got["Y"].shape == Yr.shape == (5, 2, 4)
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-12, atol=1e-14)
    assert str(got["YFormat"][0]) == "TCB"
    # The command line's DataFormat takes precedence over the file's (here the file's is wrong for X).
    wrong = save(tmp_path / "wrong.mat", DataFormat="CTB", **p)
    assert run_mlstm("run", wrong, "-o", out).returncode == 2
    run_mlstm("run", wrong, "-o", out, "DataF=tcb", check=0)
    np.testing.assert_allclose(load(out)["Y"], Yr, rtol=1e-12, atol=1e-14)


def test_single_class_round_trip(tmp_path, problem):
    p = {k: v.astype(np.float32) for k, v in problem.items()}
    p["C0"] = problem["C0"]  # double: cellState stays double
    infile = save(tmp_path / "in.mat", **p)
    out = tmp_path / "o.mat"
    run_mlstm("run", infile, "-o", out, "DataFormat=CBT", check=0)
    got = load(out)
    assert got["Y"].dtype == np.float32 and got["hiddenState"].dtype == np.float32
    assert got["cellState"].dtype == np.float64
    Yr, _, _ = reference_lstm(*problem.values(), "CBT")
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-5, atol=1e-6)


def test_var_mapping_and_several_inputs(tmp_path, problem):
    data = save(tmp_path / "data.mat", signals=problem["X"], H0=problem["H0"], C0=problem["C0"])
    params = save(
        tmp_path / "params.mat",
        W=problem["weights"],
        recurrentWeights=problem["recurrentWeights"],
        bias=problem["bias"],
    )
    out = tmp_path / "o.mat"
    run_mlstm("run", data, params, "--var", "X=signals", "--var", "weights=W", "-o", out, "DataFormat=CBT", check=0)
    Yr, _, _ = reference_lstm(*problem.values(), "CBT")
    np.testing.assert_allclose(load(out)["Y"], Yr, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("flags", [(), ("-v",)])
def test_role_in_two_files_the_first_input_wins_and_a_notice_says_so(tmp_path, problem, infile, flags):
    """Never silent: without -v too, stderr says which file gave X (once); -q leaves it to -v."""
    other_x = problem["X"] + 1.0
    other = save(tmp_path / "other.mat", X=other_x)
    for first, second, x in ((infile, other, problem["X"]), (other, infile, other_x)):
        out = tmp_path / "o.mat"
        proc = run_mlstm("run", first, second, "-o", out, "DataFormat=CBT", *flags, check=0)
        args = dict(problem, X=x)
        Yr, _, _ = reference_lstm(*args.values(), "CBT")
        np.testing.assert_allclose(load(out)["Y"], Yr, rtol=1e-12, atol=1e-14)
        said = f"X: variable 'X' is in {first} and {second}; using {first}"
        assert proc.stderr.count(said) == 1, proc.stderr
    quiet = run_mlstm("run", infile, other, "-o", tmp_path / "q.mat", "DataFormat=CBT", "-q", check=0)
    assert quiet.stderr == ""


def test_input_file_wins_over_the_weights_file(tmp_path, problem, infile):
    weights = save(tmp_path / "w.mat", weights=problem["weights"] * 0.5, recurrentWeights=problem["recurrentWeights"])
    out = tmp_path / "o.mat"
    proc = run_mlstm("run", infile, "--weights", weights, "-o", out, "DataFormat=CBT", "-v", check=0)
    Yr, _, _ = reference_lstm(*problem.values(), "CBT")
    np.testing.assert_allclose(load(out)["Y"], Yr, rtol=1e-12, atol=1e-14)
    assert f"using {infile}" in proc.stderr


def test_matlab_layout_inputs_still_need_the_states(tmp_path, problem):
    data = save(tmp_path / "d.mat", **{k: v for k, v in problem.items() if k not in ("H0", "C0")})
    proc = run_mlstm("run", data, "-o", tmp_path / "o.mat", "DataFormat=CBT")
    assert_one_line_error(proc, "no variable 'H0'")


def test_python_dash_m_and_console_script_agree(tmp_path, infile):
    import shutil
    import subprocess

    exe = shutil.which("mlstm")
    if exe is None:
        pytest.skip("the mlstm console script is not installed in this environment")
    a, b = tmp_path / "a.mat", tmp_path / "b.mat"
    run_mlstm("run", infile, "-o", a, "DataFormat=CBT", check=0)
    subprocess.run([exe, "run", infile, "-o", b, "DataFormat=CBT"], check=True)
    np.testing.assert_array_equal(load(a)["Y"], load(b)["Y"])


def test_info_lists_sizes_and_classes(infile):
    proc = run_mlstm("info", infile, check=0)
    text = proc.stdout.decode()
    assert "MAT v5/v7" in text
    assert any(line.split()[:3] == ["X", "3x4x5", "double"] for line in text.splitlines())
    assert any(line.split()[:3] == ["bias", "8x1", "double"] for line in text.splitlines())


def test_help_and_version():
    assert b"run" in run_mlstm("--help", check=0).stdout
    assert b"mlstm" in run_mlstm("--version", check=0).stdout


# ---- bad invocations and bad input: one Error: line, exit 2, existing output untouched ----


@pytest.fixture
def existing_output(tmp_path):
    out = tmp_path / "out.mat"
    out.write_bytes(b"precious")
    return out


def _check_untouched(out, tmp_path):
    assert out.read_bytes() == b"precious"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".mlstm-")]


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["DataFormat=CBX"], ["DataFormat", "'X'"]),
        (["DataFormat=CBT", "Foo=1"], ["unknown name-value option 'Foo'", "valid names are DataFormat"]),
        (["DataFormat=CBT", "State=sigmoid"], ["StateActivationFunction", "expected one of 'tanh'", "'sigmoid'"]),
        (["DataFormat=CBT", "DataF=CTB"], ["DataFormat given twice"]),
        (["DataFormat=CB"], ["time dimension 'T'"]),
        (["DataFormat=CUT"], ["'U' dimensions must be singleton", "size 4"]),
        ([], ["DataFormat option is required"]),
        (["DataFormat=CBT", "--engine", "tpu"], ["--engine", "tpu"]),
        (["DataFormat=CBT", "--var", "Q=x"], ["--var", "Q=x"]),
        (["DataFormat=CBT", "--var", "X=nothere"], ["no variable 'nothere' for X"]),
    ],
)
def test_bad_invocation(tmp_path, infile, existing_output, extra, fragments):
    proc = run_mlstm("run", infile, "-o", existing_output, *extra)
    assert_one_line_error(proc, *fragments)
    _check_untouched(existing_output, tmp_path)


@pytest.mark.parametrize(
    "change,fragments",
    [
        ({"weights": np.zeros((8, 4))}, ["variable 'weights'", "expected size 4H-by-InputSize = 8x3", "found 8x4"]),
        ({"H0": np.zeros((2, 3))}, ["variable 'H0'", "2x1 or 2x4", "found 2x3"]),
        ({"bias": np.zeros((3, 3))}, ["variable 'bias'", "length 4H = 8", "3x3"]),
        ({"X": np.ones((3, 4, 5), dtype=np.int16)}, ["variable 'X'", "single or double", "int16"]),
        ({"C0": np.ones((2, 4), dtype=complex)}, ["variable 'C0'", "complex double"]),
        ({"recurrentWeights": "abc"}, ["recurrentWeights", "char"]),
    ],
)
def test_bad_variables_name_file_and_variable(tmp_path, problem, existing_output, change, fragments):
    p = dict(problem)
    p.update(change)
    infile = save(tmp_path / "bad.mat", **p)
    proc = run_mlstm("run", infile, "-o", existing_output, "DataFormat=CBT")
    line = assert_one_line_error(proc, "bad.mat", *fragments)
    assert "expected" in line and "found" in line
    _check_untouched(existing_output, tmp_path)


def test_missing_variable_lists_what_was_found(tmp_path, problem, existing_output):
    p = dict(problem)
    del p["bias"]
    infile = save(tmp_path / "in.mat", **p)
    proc = run_mlstm("run", infile, "-o", existing_output, "DataFormat=CBT")
    assert_one_line_error(proc, "no variable 'bias'", "found: C0, H0, X", "--var bias=NAME")
    _check_untouched(existing_output, tmp_path)


@pytest.mark.parametrize(
    "content,fragments",
    [
        (b"", ["empty file"]),
        (b"hello, this is plain text and no matrix file at all\n" * 20, ["expected a MAT or HDF5 file"]),
        (None, ["damaged or truncated"]),  # a truncated MAT file
    ],
)
def test_corrupt_and_foreign_files(tmp_path, infile, existing_output, content, fragments):
    bad = tmp_path / "bad.mat"
    if content is None:
        content = open(infile, "rb").read()[:300]
    bad.write_bytes(content)
    proc = run_mlstm("run", bad, "-o", existing_output, "DataFormat=CBT")
    assert_one_line_error(proc, "bad.mat", *fragments)
    _check_untouched(existing_output, tmp_path)


def test_bare_option_names_and_empty_names_are_usage_errors(tmp_path, infile, existing_output):
    proc = run_mlstm("run", infile, "-o", existing_output, "DataFormat")
    assert_one_line_error(proc, "expected Name=Value", "'DataFormat' with no value")
    assert_one_line_error(run_mlstm("run", infile, "-o", existing_output, "=CBT"), "Name=Value", "'=CBT'")
    _check_untouched(existing_output, tmp_path)
    # A file whose name has '=' in it is still an input.
    odd = tmp_path / "a=b.mat"
    odd.write_bytes(open(infile, "rb").read())
    run_mlstm("run", odd, "-o", tmp_path / "o.mat", "DataFormat=CBT", check=0)


def test_no_command_is_one_error_line():
    assert_one_line_error(run_mlstm(subprocess_only=True), "expected a command", "run", "--help")


def test_missing_input_file(tmp_path, existing_output):
    proc = run_mlstm("run", tmp_path / "nope.mat", "-o", existing_output, "DataFormat=CBT", subprocess_only=True)
    assert_one_line_error(proc, "nope.mat", "No such file")
    _check_untouched(existing_output, tmp_path)


def test_missing_output_option_and_bad_output_dir(tmp_path, infile):
    assert_one_line_error(run_mlstm("run", infile, "DataFormat=CBT"), "-o")
    proc = run_mlstm("run", infile, "-o", tmp_path / "no" / "dir" / "o.mat", "DataFormat=CBT")
    assert_one_line_error(proc, "does not exist")
    proc = run_mlstm("run", infile, "-o", tmp_path / "o.txt", "DataFormat=CBT")
    assert_one_line_error(proc, "o.txt", ".mat, .h5 or .hdf5", "--format")


def test_cupy_engine_without_gpu_is_an_error(tmp_path, infile):
    from mlstm.engines import cupy_unavailable_reason

    if cupy_unavailable_reason() is None:
        pytest.skip("a GPU is usable here")
    proc = run_mlstm("run", infile, "-o", tmp_path / "o.mat", "DataFormat=CBT", "--engine", "cupy")
    assert_one_line_error(proc, "engine", "cupy")
    assert not (tmp_path / "o.mat").exists()


def test_engine_auto_says_which_engine_ran(tmp_path, infile):
    from mlstm.engines import cupy_unavailable_reason

    proc = run_mlstm("run", infile, "-o", tmp_path / "o.mat", "DataFormat=CBT", "--engine", "auto", "-v", check=0)
    expected = "numpy" if cupy_unavailable_reason() else "cupy"
    assert f"engine={expected} " in proc.stderr


def test_debug_shows_traceback(tmp_path, infile):
    proc = run_mlstm("run", infile, "-o", tmp_path / "o.mat", "DataFormat=XYZ", "--debug", subprocess_only=True)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_a_stored_option_of_the_wrong_class_names_its_class(tmp_path, problem):
    """A DataFormat saved as a cell ({'CBT'}) or a number: the error says which it found."""
    for value, found in ((np.array(["CBT"], dtype=object), "a cell array"), (np.array([[1.0]]), "a double array")):
        path = save(tmp_path / "d.mat", DataFormat=value, **problem)
        proc = run_mlstm("run", path, "-o", tmp_path / "o.mat")
        assert_one_line_error(proc, "d.mat", "'DataFormat'", "char vector", found)
