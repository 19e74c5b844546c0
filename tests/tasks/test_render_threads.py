"""How many torch threads a CPU render actor takes (tasks.render.cpu_render_threads)."""

from __future__ import annotations

import pytest

from infra.settings import SettingsInvalid, load_settings
from tasks.render import cpu_render_threads


@pytest.mark.parametrize(("cores", "env", "threads"), [
    (2, {}, 1),  # one core left to the flow's finishing beside the render
    (8, {}, 7),
    (1, {}, 1),
    (8, {"RENDER_WORKERS": "2"}, 3),  # the rest shared by the node's actors
    (8, {"RENDER_WORKERS": "2", "RENDER_CONTEXT_PARALLEL": "2"}, 1),
    (2, {"RENDER_WORKERS": "3"}, 1),  # never fewer than one
    (2, {"RENDER_THREADS": "2"}, 2),  # set: taken as it is
    (64, {"RENDER_THREADS": "4", "RENDER_WORKERS": "2"}, 4),
])
def test_a_render_leaves_a_core_to_the_flow_unless_told(cores: int, env: dict[str, str],
                                                         threads: int) -> None:
    assert cpu_render_threads(load_settings(env), cores) == threads


def test_render_threads_must_be_a_positive_count() -> None:
    for bad in ("0", "-1", "two"):
        with pytest.raises(SettingsInvalid, match="RENDER_THREADS"):
            load_settings({"RENDER_THREADS": bad})
