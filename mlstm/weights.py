"""A --weights file read once: MATLAB variables, or foreign (ONNX, PyTorch, Keras) weights converted.

Here rather than in :mod:`mlstm.io` so that the file layer never imports the foreign readers
(which import it): the import graph stays one-way.
"""

from __future__ import annotations

from .io import MemoryFile, open_matrix_file


def open_weights_file(
    path: str,
    hdf5_order: str = "numpy",
    node: str | None = None,
    layer: str | None = None,
    kind: str | None = None,
    names: list[str] | None = None,
) -> MemoryFile:
    """A weights file read once into memory: MAT/HDF5 variables (``names`` of them), or an ONNX
    model, PyTorch state dict or Keras weights file converted to MATLAB's layout."""
    from .foreign import read_foreign

    foreign = read_foreign(path, kind, node, layer, hdf5_order)
    if foreign is not None:
        return MemoryFile(path, "converted weights", foreign)
    with open_matrix_file(path, hdf5_order) as source:
        return MemoryFile.from_file(source, names)
