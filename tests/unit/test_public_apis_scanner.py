"""The scanner behind tests/unit/test_public_apis.py (tests/support/public_apis.py), on small snippets."""

from __future__ import annotations

import textwrap

from tests.support.public_apis import scan_sources


def found(**modules: str) -> list[str]:
    """Each finding as "path:line: code", for snippets given as module_path=source."""
    sources = {name.replace("__", "/") + ".py": textwrap.dedent(text) for name, text in modules.items()}
    return [f"{f.path}:{f.line}: {f.code}" for f in scan_sources(sources)]


def test_a_private_attribute_of_another_packages_object_is_reported() -> None:
    assert found(shared__mod="""
        def pending(sub):
            return sub._pending_queue.qsize()
    """) == ["shared/mod.py:3: sub._pending_queue"]


def test_documented_public_names_that_start_with_an_underscore_are_not() -> None:
    assert found(shared__mod="""
        def rows(result, point):
            out = [dict(r._mapping) for r in result]
            return out, point._replace(x=1)._asdict(), point._fields
    """) == []


def test_public_dunders_self_cls_and_super_of_our_own_classes_are_not_reported() -> None:
    assert found(shared__mod="""
        class Store:
            def __init__(self):
                super().__init__()
                self._lock = None

            @classmethod
            def make(cls):
                return cls._default

            def close(self, exc):
                return self._lock, type(exc).__name__, exc.__cause__, self.__class__.__qualname__
    """) == []


def test_a_frozen_dataclass_may_set_its_own_field_but_not_another_object_s() -> None:
    assert found(shared__mod="""
        import uuid
        from dataclasses import dataclass
        import pydantic

        @dataclass(frozen=True)
        class Item:
            x: int
            def __post_init__(self):
                object.__setattr__(self, "y", self.x)

        def fast_uuid(n):
            u = object.__new__(uuid.UUID)
            object.__setattr__(u, "int", n)
            return u

        class Model(pydantic.BaseModel):
            def model_post_init(self, context):
                object.__setattr__(self, "y", 1)
    """) == ["shared/mod.py:13: object.__new__", "shared/mod.py:14: object.__setattr__", "shared/mod.py:19: object.__setattr__"]


def test_pydantic_internals_on_our_own_models_are_reported() -> None:
    assert found(shared__base="""
        from pydantic import BaseModel

        class Event(BaseModel):
            n: int
    """, shared__use="""
        from .base import Event

        def build(values, event):
            made = Event.__new__(Event)
            return made, event.__dict__, Event.__pydantic_validator__
    """) == ["shared/use.py:5: Event.__new__", "shared/use.py:6: Event.__pydantic_validator__", "shared/use.py:6: event.__dict__"]


def test_private_names_our_own_modules_define_are_ours() -> None:
    assert found(shared____init__="", shared__store="""
        _COLUMNS = ("a", "b")
        class Store:
            _cache = {}
    """, services__report="""
        from shared import store
        from shared.store import Store
        import shared.store as log

        def columns():
            return store._COLUMNS, log._COLUMNS, Store._cache, store._MISSING
    """) == ["services/report.py:7: store._MISSING"]


def test_overriding_a_private_method_of_another_packages_class_is_reported_and_a_new_helper_is_not() -> None:
    assert found(shared__broker="""
        import threading

        class Worker(threading.Thread):
            def _bootstrap(self):
                pass

            def _our_helper(self):
                return self._our_state

            def __init__(self):
                super().__init__()
                self._our_state = 1
    """) == ["shared/broker.py:5: def Worker._bootstrap"]


def test_reading_another_packages_private_state_through_self_is_reported() -> None:
    assert found(shared__broker="""
        import threading

        class Worker(threading.Thread):
            def started(self):
                return self._started, self._mine

            def mark(self):
                self._mine = True
    """) == ["shared/broker.py:6: self._started"]


def test_process_wide_patches_of_another_package_are_reported() -> None:
    assert found(shared__patch="""
        import json
        from nats.js.client import JetStreamContext

        def fetch(self, batch=1):
            return None

        JetStreamContext.PullSubscription.fetch = fetch
        setattr(json, "dumps", fetch)

        def ours(thing):
            thing.value = 1
    """) == ["shared/patch.py:8: JetStreamContext.PullSubscription.fetch", "shared/patch.py:9: setattr(json, 'dumps', fetch)"]


def test_getattr_with_a_private_name_is_the_same_access() -> None:
    assert found(shared__tls="""
        def writer(nc, model):
            return getattr(getattr(nc, "_transport", None), "_io_writer", None), getattr(model, "__module__", None)
    """) == ["shared/tls.py:3: getattr(getattr(nc, '_transport', None), '_io_writer', None)",
             "shared/tls.py:3: getattr(nc, '_transport', None)"]
