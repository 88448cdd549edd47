"""Files the installed package reads at run time (demo model, dashboard scripts and styles, default run configs),
found with importlib.resources so they resolve the same from a source checkout, an editable install or a wheel.

In the source tree they live in the top-level `assets/` and `configs/` folders; `neuron_atlas/assets` and
`neuron_atlas/configs` are links to them, so the wheel ships them as package data of `neuron_atlas`.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


class ResourceMissing(FileNotFoundError):
    """A file the package should ship is absent (a broken install or checkout)."""


def _package_dir(package: str) -> Path:
    path = Path(str(files(package)))
    if not path.is_dir():
        raise ResourceMissing(f"{package} is not a folder on disk ({path}); install neuron-atlas unzipped (pip does)")
    return path


def assets_dir() -> Path:
    """The dashboard's static files (app.js, style.css) and the demo model's folder."""
    return _package_dir("neuron_atlas.assets")


def demo_model_dir() -> Path:
    """The shipped demo model (a `save_pretrained` folder); may be absent in a checkout without it."""
    return assets_dir() / "demo-model"


def configs_dir() -> Path:
    """The run configs shipped with the package (demo.yaml, tiny.yaml, fleurs-large.yaml)."""
    return _package_dir("neuron_atlas.configs")


def packaged_configs() -> list[str]:
    """Names of the shipped run configs, without the .yaml suffix."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A run config: an existing file path as given, else a shipped config by name (`demo` or `demo.yaml`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = configs_dir() / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise ResourceMissing(f"run config {str(name_or_path)!r} not found (neither a file nor one of the shipped configs: "
                          f"{', '.join(packaged_configs())})")
