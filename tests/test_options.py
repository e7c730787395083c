import pytest

from mlstm.errors import MlstmError
from mlstm.options import Options, parse_options, resolve_name


@pytest.mark.parametrize(
    "name,full",
    [
        ("DataFormat", "DataFormat"),
        ("dataformat", "DataFormat"),
        ("DataF", "DataFormat"),
        ("d", "DataFormat"),
        ("STATEACT", "StateActivationFunction"),
        ("gate", "GateActivationFunction"),
    ],
)
def test_names_case_insensitive_with_prefixes(name, full):
    assert resolve_name(name) == full


def test_values_case_insensitive():
    opts = parse_options([("State", "SoftSign"), ("GateActivationFunction", "HARD-SIGMOID"), ("DataFormat", "cbt")])
    assert opts == Options(data_format="cbt", state_activation="softsign", gate_activation="hard-sigmoid")


def test_defaults():
    assert parse_options([]) == Options(None, "tanh", "sigmoid")


def test_repeated_name_even_under_two_spellings():
    with pytest.raises(MlstmError, match=r"DataFormat given twice \(as 'DataFormat' and 'DataF'\)"):
        parse_options([("DataFormat", "CBT"), ("DataF", "CTB")])


def test_ambiguous_prefix_lists_matches(monkeypatch):
    import mlstm.options as options

    monkeypatch.setitem(options.OPTION_CHOICES, "DataFoo", None)
    with pytest.raises(MlstmError, match=r"ambiguous name-value option 'Data' matches DataFormat, DataFoo"):
        resolve_name("Data")


def test_unknown_name_lists_valid():
    with pytest.raises(
        MlstmError, match=r"valid names are DataFormat, StateActivationFunction, GateActivationFunction"
    ):
        resolve_name("Format")


def test_empty_name():
    with pytest.raises(MlstmError, match="unknown name-value option ''"):
        resolve_name("")
