"""The event dataclasses: frozen, slotted, uniquely named, optional fields."""

from __future__ import annotations

import dataclasses

import pytest

import stormwall.events as events_module
from stormwall.events import CallEnded, Event


ALL = [getattr(events_module, n) for n in events_module.__all__]


class TestEvents:
    @pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
    def test_frozen_slotted_and_named(self, cls):
        """Every event is a frozen, slotted dataclass with a dotted name."""
        assert dataclasses.is_dataclass(cls)
        assert "__slots__" in cls.__dict__
        assert cls.name.startswith("stormwall.")
        assert cls.__dataclass_params__.frozen

    def test_names_unique(self):
        """No two event classes share a dotted name."""
        names = [c.name for c in ALL]

        assert len(names) == len(set(names))

    def test_immutable(self):
        """An event cannot be changed after the fact."""
        e = CallEnded(time=0.0, outcome="success", attempts=1, duration=0.1)

        with pytest.raises(dataclasses.FrozenInstanceError):
            e.outcome = "failure"  # type: ignore[misc]

    def test_common_fields_default_to_none(self):
        """Outside a call, key, call_id and attempt are None."""
        e = Event(time=1.0)

        assert (None, None, None, None) == (
            e.executor,
            e.key,
            e.call_id,
            e.attempt,
        )
