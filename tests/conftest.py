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


#: Fixtures that run a whole precompute or training (tens of seconds on 2 cores): tests using them are marked slow, so
#: `make test-fast` leaves them out (`make test` runs everything).
SLOW_FIXTURES = {"finished", "structure_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
