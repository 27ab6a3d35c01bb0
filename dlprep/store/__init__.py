"""HDF5 store (``dlprep-hdf5/1``): atomic writers and a validating reader. Spec: docs/FORMAT.md.

Modules: ``writers`` (image and sequence writers), ``reader`` (open with a format check,
index range checks, summaries, verification), ``checksum`` (the per-dataset CRC-32), ``layout``
(what every file shares: provenance, splits, classes, meta), ``atomic`` (temp name + rename),
``h5file`` (creating and abandoning files safely on a full disk), ``osio`` (positional writes
with early writeback), ``latest`` (the ``latest`` pointer). Pixel statistics live in
:mod:`dlprep.pixelstats`.
"""

from .atomic import atomic_output
from .layout import FORMAT_VERSION, command_line
from .reader import dataset_summary, open_prepared
from .writers import ImageTensorWriter, SequenceWriter

__all__ = [
    "FORMAT_VERSION",
    "ImageTensorWriter",
    "SequenceWriter",
    "atomic_output",
    "command_line",
    "dataset_summary",
    "open_prepared",
]
