"""dlprep: public deep-learning data -> verified, cached, normalized HDF5 tensors -> loaders.

``import dlprep`` is cheap: torch and other heavy dependencies are imported only when used.
"""

from ._version import __version__
from .errors import DlprepError, FormatError

__all__ = ["DlprepError", "FormatError", "__version__"]
