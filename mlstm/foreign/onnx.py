"""ONNX ``LSTM`` nodes to MATLAB's layout, and MATLAB's weights to a one-node ONNX model.

ONNX: W [dirs, 4H, In], R [dirs, 4H, H], B [dirs, 8H] = (Wb, Rb); gate blocks i, o, f, c.
W, R and B may be initializers, Constant nodes, or come out of a constant subgraph (Slice,
Concat, Unsqueeze, Transpose, ... on initializers, as PyTorch's exporter writes without constant
folding): the onnx package's reference evaluator computes those. Anything MATLAB's lstm cannot
express is an error naming the attribute, never an approximation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MlstmError
from .common import MATLAB_TO_ONNX, ONNX_TO_MATLAB, blocks, check_lstm, float_weights

ONNX_GATE = {"sigmoid": "sigmoid", "hardsigmoid": "hard-sigmoid"}
ONNX_STATE = {"tanh": "tanh", "softsign": "softsign", "relu": "relu"}
# Ops whose output is not a function of their inputs: never "constant".
NONDETERMINISTIC = (
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
)
WRITE_OPSET = 14


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MlstmError("reading .onnx files needs the onnx package: pip install 'mlstm[onnx]'", "--weights") from None
    return onnx


class _Constants:
    """Values of a graph's tensors that depend on no graph input, computed on demand."""

    def __init__(self, onnx: Any, model: Any):
        from onnx import numpy_helper

        self.onnx, self.model = onnx, model
        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.inputs = {i.name for i in graph.input} - set(self.initializers)
        self.values: dict[str, np.ndarray] = {}
        for name, t in self.initializers.items():
            self.values[name] = numpy_helper.to_array(t)

    def source(self, name: str) -> str | None:
        """None if ``name`` is constant, else what makes it vary (a graph input, an op)."""
        stack, seen = [name], set()
        while stack:
            current = stack.pop()
            if current in seen or current in self.initializers:
                continue
            seen.add(current)
            if current in self.inputs:
                return f"the graph input {current!r}"
            node = self.producer.get(current)
            if node is None:
                return f"{current!r}, which no node computes"
            if node.op_type in NONDETERMINISTIC:
                return f"a {node.op_type} node"
            if any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute):
                return f"a {node.op_type} node with a subgraph"
            stack.extend(i for i in node.input if i)
        return None

    def value(self, name: str, where: str) -> np.ndarray:
        if name in self.values:
            return self.values[name]
        needed: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            node = self.producer.get(current)
            if current in self.initializers or node is None or id(node) in needed:
                continue
            needed.add(id(node))
            stack.extend(i for i in node.input if i)
        helper = self.onnx.helper
        nodes = [n for n in self.model.graph.node if id(n) in needed]  # graph order is topological
        used = {i for n in nodes for i in n.input}
        graph = helper.make_graph(
            nodes,
            "constants",
            [],
            [self.onnx.ValueInfoProto(name=name)],
            [t for n, t in self.initializers.items() if n in used],
        )
        sub = helper.make_model(graph, opset_imports=list(self.model.opset_import), functions=self.model.functions)
        try:
            from onnx.reference import ReferenceEvaluator

            (result,) = ReferenceEvaluator(sub).run(None, {})
        except Exception as exc:
            raise MlstmError(
                f"{where}: could not evaluate the constant subgraph that computes {name!r} "
                f"({type(exc).__name__}: {exc})"
            ) from None
        self.values[name] = np.asarray(result)
        return self.values[name]


def read_onnx(path: str, node_name: str | None = None) -> dict[str, Any]:
    """MATLAB variables from the (one, or ``node_name``) LSTM node of an ONNX model."""
    onnx = _onnx()
    try:
        model = onnx.load(path)
    except Exception as exc:
        raise MlstmError(
            f"{path}: expected an ONNX model, found unreadable data ({type(exc).__name__}: {exc})"
        ) from None
    graph = model.graph
    nodes = [n for n in graph.node if n.op_type == "LSTM"]
    names = [n.name or f"#{k}" for k, n in enumerate(nodes)]
    if not nodes:
        ops = sorted({n.op_type for n in graph.node})
        others = [op for op in ops if op in ("GRU", "RNN")]
        if others:
            raise MlstmError(f"{path}: not an LSTM: the model's recurrent nodes are {', '.join(others)}")
        raise MlstmError(f"{path}: expected an LSTM node, found none (ops: {ops})")
    if node_name is None:
        if len(nodes) > 1:
            raise MlstmError(f"{path}: {len(nodes)} LSTM nodes ({', '.join(names)}); pick one with --node NAME")
        node, label = nodes[0], names[0]
    else:
        if node_name not in names:
            raise MlstmError(f"{path}: no LSTM node {node_name!r} (found: {', '.join(names)})", "--node")
        node, label = nodes[names.index(node_name)], node_name
    where = f"{path}: LSTM node {label!r}"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    out = _activations(where, attrs)
    inputs = list(node.input) + [""] * (8 - len(node.input))
    if inputs[7]:
        raise MlstmError(f"{where}: input P (peephole weights) is given; MATLAB's lstm has no peepholes")
    constants = _Constants(onnx, model)

    def tensor(index: int, what: str, required: bool = True) -> np.ndarray | None:
        name = inputs[index]
        if not name:
            if required:
                raise MlstmError(f"{where}: input {what} is missing")
            return None
        varying = constants.source(name)
        if varying is not None:
            if required:
                raise MlstmError(
                    f"{where}: input {what} ({name!r}) depends on {varying}; mlstm reads weights only from "
                    "initializers, Constant nodes and subgraphs computed from them"
                )
            return None  # a state the graph computes at run time: not part of the weights
        return float_weights(where, f"input {what} ({name!r})", constants.value(name, where))

    W, R, B = tensor(1, "W"), tensor(2, "R"), tensor(3, "B", required=False)
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != 1 or R.shape[0] != 1:
        raise MlstmError(
            f"{where}: expected W [1, 4H, In] and R [1, 4H, H] (one direction), found {list(W.shape)} and "
            f"{list(R.shape)}"
        )
    hidden = check_lstm(where, "W", W[0], "R", R[0])
    if "hidden_size" in attrs and int(attrs["hidden_size"]) != hidden:
        raise MlstmError(f"{where}: attribute hidden_size is {attrs['hidden_size']} but R is {list(R.shape)}")
    if B is not None and B.size != 8 * hidden:
        raise MlstmError(f"{where}: expected B [1, {8 * hidden}] (Wb, Rb), found {list(B.shape)}")
    bias = np.zeros(4 * hidden, W.dtype) if B is None else B.reshape(-1)[: 4 * hidden] + B.reshape(-1)[4 * hidden :]
    out.update(
        weights=blocks(W[0], ONNX_TO_MATLAB),
        recurrentWeights=blocks(R[0], ONNX_TO_MATLAB),
        bias=blocks(bias, ONNX_TO_MATLAB).reshape(-1, 1),
    )
    layout = attrs.get("layout", 0)
    for index, role in ((5, "H0"), (6, "C0")):
        state = tensor(index, role, required=False)
        if state is not None:  # [dirs, B, H] (layout 0) or [B, dirs, H] (layout 1)
            state = state[:, 0, :] if layout else state[0]
            out[role] = np.ascontiguousarray(state.T)
    return out


def _activations(where: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """GateActivationFunction and StateActivationFunction from the node's attributes."""

    def refuse(attribute: str, why: str) -> MlstmError:
        return MlstmError(f"{where}: attribute {attribute} {why}; MATLAB's lstm cannot express it")

    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction != "forward":
        raise refuse("direction", f"is {direction!r} (only 'forward' is MATLAB's lstm)")
    if "clip" in attrs:
        raise refuse("clip", f"is {attrs['clip']} (cell clipping)")
    if attrs.get("input_forget", 0):
        raise refuse("input_forget", "is 1 (coupled input and forget gates)")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    acts = acts or ["Sigmoid", "Tanh", "Tanh"]
    if len(acts) != 3:
        raise refuse("activations", f"is {acts} (expected three functions f, g, h for one direction)")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    f, g, h = (a.lower() for a in acts)
    if f not in ONNX_GATE:
        raise refuse("activations", f"has gate function f = {acts[0]} (MATLAB: Sigmoid or HardSigmoid)")
    if g != h:
        raise refuse("activations", f"uses {acts[1]} for the cell candidate but {acts[2]} for the output")
    if g not in ONNX_STATE:
        raise refuse("activations", f"has state function {acts[1]} (MATLAB: Tanh, Softsign or Relu)")
    if f == "hardsigmoid":
        alpha = alphas[0] if alphas else 0.2
        beta = betas[0] if betas else 0.5
        if not (np.isclose(alpha, 0.2, rtol=0, atol=1e-7) and np.isclose(beta, 0.5, rtol=0, atol=1e-7)):
            raise refuse(
                "activation_alpha/activation_beta", f"give HardSigmoid({alpha}, {beta}); MATLAB's is (0.2, 0.5)"
            )
    elif alphas or betas:
        raise refuse("activation_alpha/activation_beta", "are set but none of the functions takes them")
    return {"GateActivationFunction": ONNX_GATE[f], "StateActivationFunction": ONNX_STATE[g]}


def write_onnx(path: str, variables: dict[str, Any], dtype: str = "single") -> None:
    """Save :func:`onnx_model` of MATLAB-layout weights to ``path``."""
    onnx = _onnx()
    model = onnx_model(variables, dtype)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def onnx_model(variables: dict[str, Any], dtype: str = "single") -> Any:
    """A one-node ONNX LSTM (opset 14) from MATLAB-layout weights, in float32 (``dtype`` 'single':
    ONNX Runtime's CPU LSTM runs float32 only) or float64 ('double'); X, initial_h and initial_c
    are graph inputs, so ONNX Runtime runs it on any batch and sequence length."""
    _onnx()  # the readable "install the onnx extra" error
    from onnx import TensorProto, helper, numpy_helper

    W = np.asarray(variables["weights"])
    R = np.asarray(variables["recurrentWeights"])
    b = np.asarray(variables["bias"]).reshape(-1)
    hidden, input_size = R.shape[1], W.shape[1]
    if dtype not in ("single", "double"):
        raise MlstmError(f"expected single or double, found {dtype!r}", "--dtype")
    np_type = np.float64 if dtype == "double" else np.float32
    elem = TensorProto.DOUBLE if dtype == "double" else TensorProto.FLOAT
    gate = variables.get("GateActivationFunction", "sigmoid")
    state = variables.get("StateActivationFunction", "tanh")
    f = {"sigmoid": "Sigmoid", "hard-sigmoid": "HardSigmoid"}[gate]
    g = {"tanh": "Tanh", "softsign": "Softsign", "relu": "Relu"}[state]
    attrs: dict[str, Any] = {"hidden_size": hidden, "activations": [f, g, g]}
    if f == "HardSigmoid":
        attrs.update(activation_alpha=[0.2], activation_beta=[0.5])
    inits = [
        numpy_helper.from_array(blocks(W, MATLAB_TO_ONNX)[None].astype(np_type), "W"),
        numpy_helper.from_array(blocks(R, MATLAB_TO_ONNX)[None].astype(np_type), "R"),
        numpy_helper.from_array(
            np.concatenate([blocks(b, MATLAB_TO_ONNX), np.zeros(4 * hidden)])[None].astype(np_type), "B"
        ),
    ]
    node = helper.make_node(
        "LSTM", ["X", "W", "R", "B", "", "initial_h", "initial_c"], ["Y", "Y_h", "Y_c"], name="lstm", **attrs
    )
    graph = helper.make_graph(
        [node],
        "mlstm_lstm",
        [
            helper.make_tensor_value_info("X", elem, ["T", "B", input_size]),
            helper.make_tensor_value_info("initial_h", elem, [1, "B", hidden]),
            helper.make_tensor_value_info("initial_c", elem, [1, "B", hidden]),
        ],
        [
            helper.make_tensor_value_info("Y", elem, ["T", 1, "B", hidden]),
            helper.make_tensor_value_info("Y_h", elem, [1, "B", hidden]),
            helper.make_tensor_value_info("Y_c", elem, [1, "B", hidden]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", WRITE_OPSET)], producer_name="mlstm")
