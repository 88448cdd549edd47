"""The dashboard's copies of the engine's vocabulary (it imports nothing of the engine) equal what the backend serves."""
from __future__ import annotations

import pytest

from app import state as st
from app.client import VOCABULARY
from app.components.common import STACK_NAMES, TASK_NAMES
from tests.backend.api_support import atlas_store, client_for, make_settings  # noqa: F401  (atlas_store is a fixture)


@pytest.fixture(scope="module")
def capabilities(atlas_store, tiny_bundle, tmp_path_factory):  # noqa: F811
    store, _ = atlas_store
    with client_for(make_settings(store, tmp_path_factory.mktemp("constants")), tiny_bundle) as c:
        return c.get("/capabilities").json()


def test_the_dashboards_vocabulary_is_the_backends(capabilities):
    served = capabilities["vocabulary"]
    assert {name: list(values) for name, values in VOCABULARY.items()} == {name: served[name] for name in VOCABULARY}


def test_labels_and_url_choices_cover_the_vocabulary_exactly(capabilities):
    served = capabilities["vocabulary"]
    assert list(STACK_NAMES) == served["stacks"] and set(served["tasks"]) <= set(TASK_NAMES)
    assert st.PAGES["lab"].key("set").choices == tuple(served["set_kinds"])
    assert st.PAGES["lab"].key("value").choices == (*served["statistics"], "zero", "scale")  # scale: the dial's factor
    assert st.PAGES["unit"].key("task").choices == tuple(served["tasks"])
