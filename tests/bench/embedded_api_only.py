"""An ablation for bench_api: the embedded server exactly as `python -m functions.dev.embedded` runs it, except
that nothing consumes the launch topic, so POST /train costs only the api's own work (validate, group
commit, publish). Not a product mode: it exists to show how the interpreter's time splits between
accepting jobs and launching them."""

from __future__ import annotations

import runpy

from shared.adapters.inline_bus import InlineBus
from shared.settings import Settings

_subscribe = InlineBus.subscribe
_launch_topic = Settings().topic_train_requests


def _subscribe_all_but_launches(self, topic, handler, dead_letter=None, **options):  # type: ignore[no-untyped-def]
    if topic != _launch_topic:
        _subscribe(self, topic, handler, dead_letter, **options)


InlineBus.subscribe = _subscribe_all_but_launches  # type: ignore[method-assign]
runpy.run_module("functions.dev.embedded", run_name="__main__")
