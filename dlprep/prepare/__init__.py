"""Prepare stage: run a recipe's builder to turn verified raw files into a prepared HDF5 file."""

from .core import BUILDERS, PrepareContext, find_prepared, prepare, prepared_or_prepare
from .params import Param

__all__ = ["BUILDERS", "Param", "PrepareContext", "find_prepared", "prepare",
           "prepared_or_prepare"]
