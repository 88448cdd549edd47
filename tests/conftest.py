"""Shared fixtures: the tiny random model (built once per session) and its unit registry."""
from __future__ import annotations

import pytest
import transformers

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="session")
def tiny_bundle():
    from neuron_atlas.engine.model.loading import configure_cpu_threads, load_model

    bundle = load_model("tiny-random", device="cpu")
    configure_cpu_threads(bundle)
    return bundle


@pytest.fixture(scope="session")
def tiny_registry(tiny_bundle):
    from neuron_atlas.engine.model.unit_sites import SiteRegistry

    return SiteRegistry.from_model(tiny_bundle.model)
