"""Versions written into every store and response: the engine (code) and the store schema."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    ENGINE_VERSION = version("neuron-atlas")
except PackageNotFoundError:
    ENGINE_VERSION = "0.1.0"

#: Schema version of atlas.duckdb: a reader accepts a store with the same major version.
STORE_VERSION = "1.3"


def store_compatible(found: str, expected: str = STORE_VERSION) -> bool:
    """A store is readable when its schema major version equals ours."""
    return found.split(".")[0] == expected.split(".")[0]
