"""pytest fixtures for adapter authors (loaded automatically once pbx-bridge is installed:
it is registered under the ``pytest11`` entry-point group).

    async def test_my_crm_logs_a_call(pbx_harness, pbx_clock):
        h = await pbx_harness("mycrm", {"api_token": "t", "base_url": fake.base_url})
        job = await h.deliver(pbx_sample("call_end", now=pbx_clock()))
        assert job.status == "done"

``pbx_clock`` is a :class:`bridge.testing.FakeClock` (move it with ``advance``: retries without
sleeping); ``pbx_harness(name, table, **settings)`` opens an :class:`AdapterHarness` on a
fresh database in the test's ``tmp_path`` and closes it afterwards; ``pbx_sample`` is
``bridge.samples.sample`` (onlinePBX's own webhook samples).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.samples import sample
from bridge.testing import AdapterHarness, FakeClock


@pytest.fixture
def pbx_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pbx_sample() -> Callable[..., dict[str, str]]:
    return sample


@pytest.fixture
async def pbx_harness(tmp_path: Path, pbx_clock: FakeClock) -> AsyncIterator[Callable[..., Any]]:
    opened: list[AdapterHarness] = []
    tries = itertools.count()  # one directory per call: a refused table leaves one behind

    async def open_(name: str, table: dict[str, Any], **settings: Any) -> AdapterHarness:
        directory = tmp_path / f"harness-{next(tries)}"
        directory.mkdir()
        harness = await AdapterHarness.open(
            directory, name, table, clock=settings.pop("clock", pbx_clock), **settings
        )
        opened.append(harness)
        return harness

    yield open_
    for harness in opened:
        await harness.close()
