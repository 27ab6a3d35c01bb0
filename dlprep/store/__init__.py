"""HDF5 store (``dlprep-hdf5/1``): atomic writers and a validating reader. Spec: docs/FORMAT.md."""

from .hdf5 import (
    FORMAT_VERSION,
    ImageTensorWriter,
    SequenceWriter,
    atomic_output,
    dataset_summary,
    open_prepared,
)

__all__ = [
    "FORMAT_VERSION",
    "ImageTensorWriter",
    "SequenceWriter",
    "atomic_output",
    "dataset_summary",
    "open_prepared",
]
