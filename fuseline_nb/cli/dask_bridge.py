"""``fuseline-nb worker MODULE:ATTR --broker URL --dask ADDRESS``: the broker service's steps on a Dask cluster.

One process, one :class:`~fuseline_nb.worker.dask_engine.DaskEngine` over an
:class:`~fuseline_nb.broker.clients.HttpBrokerClient`: it fetches the
service's ready steps and runs them as tasks on the cluster at ``ADDRESS``.
The named modules travel to the Dask workers by value (cloudpickle), so the
workers need fuseline-nb and the libraries the steps import, not the
workflow modules themselves. SIGTERM or SIGINT stops it: running tasks get
``--grace`` seconds to finish and report, the rest go back to the broker's queue.

Examples
--------
>>> import argparse
>>> bridge_main(argparse.Namespace(dask="tcp://127.0.0.1:1", processes=2))
2
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)


def _ship_modules_by_value(specs: list[str]) -> None:
    import cloudpickle

    for spec in specs:
        module = importlib.import_module(spec.partition(":")[0])
        if module.__name__.split(".")[0] != "fuseline_nb":
            cloudpickle.register_pickle_by_value(module)


def bridge_main(args: argparse.Namespace) -> int:
    """Serve ``args.workflows`` from the broker at ``args.broker`` on the Dask cluster ``args.dask``."""
    if getattr(args, "processes", 1) != 1:
        print("fuseline-nb worker: --processes does not apply with --dask (the Dask cluster runs the steps)",
              file=sys.stderr)
        return 2
    from ..broker.http_client import HttpBrokerClient
    from ..errors import FuselineError
    from ..worker.dask_engine import DaskEngine
    from .loader import load_workflow

    specs = list(args.workflows)
    workflows = [load_workflow(s) for s in specs]
    _ship_modules_by_value(specs)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client = HttpBrokerClient(args.broker, args.token, poll_wait=args.poll_wait, prefetch=False, retries=2)
    name = args.name or f"dask@{socket.gethostname()}/{os.getpid()}"
    try:
        engine = DaskEngine(client, workflows, args.dask, max_in_flight=args.max_in_flight, name=name)
    except (FuselineError, OSError, TimeoutError, ImportError) as exc:
        print(f"fuseline-nb worker: cannot start on Dask at {args.dask!r}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        client.close()
        return 1
    print(f"fuseline-nb worker: steps of {args.broker} run on Dask at {args.dask} "
          f"(dashboard {engine.dashboard_link})", file=sys.stderr, flush=True)
    engine.start()
    try:
        while not stopping.wait(0.5):
            if engine.error is not None:
                print(f"fuseline-nb worker: {engine.error}", file=sys.stderr)
                return 1
    finally:
        engine.stop(timeout=args.grace)
        client.close()
    return 0


__all__ = ["bridge_main"]
