"""``fuseline-nb broker`` (the HTTP broker service) and ``fuseline-nb worker`` (remote workers).

``broker`` serves a broker over HTTP with uvicorn. With ``--db`` it owns a
DuckDB file: restarting it on the same file resumes unfinished runs.
It binds 127.0.0.1 unless told otherwise, and refuses any other address
without a token (``--token`` or ``FUSELINE_NB_TOKEN``).

``worker`` imports the named workflows (``MODULE:ATTR``) and runs
``--processes`` worker processes under the worker supervisor the kernel's
pool uses too (:mod:`fuseline_nb.worker.remote`): it restarts a process that
dies, keeps the lease of a step while its process lives, and enforces step
timeouts. SIGTERM or SIGINT stops them cleanly: each finishes its current
step, reports it, and leaves the broker; a second signal kills them. ``worker --dask ADDRESS`` runs the steps on a Dask
cluster instead (:mod:`fuseline_nb.cli.dask_bridge`).

Examples
--------
>>> parser = argparse.ArgumentParser()
>>> add_parser(parser.add_subparsers())
>>> args = parser.parse_args(["broker", "--port", "8123"])
>>> args.host, args.port, args.db
('127.0.0.1', 8123, None)
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, False)
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TOKEN_ENV = "FUSELINE_NB_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (then a token is optional)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_parser(subparsers: Any) -> None:
    """Add the ``broker`` and ``worker`` subcommands."""
    b = subparsers.add_parser(
        "broker", help="serve a broker over HTTP (uvicorn)",
        description="Serve a broker over HTTP (uvicorn). With --db it owns a DuckDB file: restarting it on the "
                    "same file resumes unfinished runs. It binds 127.0.0.1 unless told otherwise, and refuses any "
                    f"other address without a token (--token or {TOKEN_ENV}). Workers join with 'fuseline-nb "
                    "worker MODULE:ATTR --broker URL' (docs/service.md).")
    b.add_argument("--db", metavar="PATH", help="DuckDB file holding the runs (default: memory, lost on exit)")
    b.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    b.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    b.add_argument("--token", help=f"bearer token workers must send (default: ${TOKEN_ENV})")
    b.add_argument("--lease-seconds", type=float, default=60.0,
                   help="seconds an assignment lives without a report or keep-alive (default 60)")
    b.add_argument("--worker-ttl", type=float, default=None, metavar="SECONDS",
                   help="forget an idle worker not heard from for this long (default: 3 leases, at least 120)")
    b.add_argument("--max-body", type=int, default=16 * 1024 * 1024, metavar="BYTES",
                   help="largest request body accepted (default 16 MiB)")
    b.set_defaults(handler=broker_main)

    w = subparsers.add_parser(
        "worker", help="run workflows' steps for a broker service",
        description="Import the named workflows (MODULE:ATTR, found on PYTHONPATH or in the current directory) "
                    "and run --processes worker processes for the broker service at --broker: a process that "
                    "dies is restarted, a step's lease is kept while its process lives, step timeouts are "
                    "enforced. SIGTERM or SIGINT stops them cleanly (each finishes and reports its current "
                    "step); a second signal kills them. With --dask ADDRESS the steps run on a Dask cluster "
                    "instead (docs/service.md, docs/scaling.md).")
    w.add_argument("workflows", nargs="+", metavar="MODULE:ATTR", help="workflows to serve, e.g. etl.flows:daily")
    w.add_argument("--broker", required=True, metavar="URL", help="the broker service, e.g. http://127.0.0.1:8000")
    w.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    w.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    w.add_argument("--name", help="label shown in the broker's worker list (default: host/pid)")
    w.add_argument("--poll-wait", type=float, default=2.0,
                   help="seconds a request for work waits on the broker (long-poll, default 2)")
    w.add_argument("--grace", type=float, default=30.0,
                   help="seconds to let running steps finish on SIGTERM before killing (default 30)")
    w.add_argument("--dask", metavar="ADDRESS",
                   help="run the steps on this Dask cluster (scheduler address) instead of worker processes")
    w.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                   help="with --dask: most steps submitted to the cluster at once (default: 4 per Dask thread, >= 64)")
    w.set_defaults(handler=worker_main)


def _bad_numbers(args: argparse.Namespace, rules: dict[str, tuple[float, bool]]) -> str | None:
    """The first option breaking its rule, said as the command line says it; ``None`` when all hold.

    ``rules`` maps an argument's dest to ``(least, least_allowed)``: a value must be a finite number
    above ``least`` (or equal to it when ``least_allowed``); ``None`` (not given) passes.

    Examples
    --------
    >>> ns = argparse.Namespace(grace=-1.0, poll_wait=2.0)
    >>> _bad_numbers(ns, {"poll_wait": (0, True), "grace": (0, True)})
    '--grace must be a number >= 0, not -1.0'
    >>> _bad_numbers(argparse.Namespace(lease_seconds=float("nan")), {"lease_seconds": (0, False)})
    '--lease-seconds must be a number > 0, not nan'
    """
    for dest, (least, least_allowed) in rules.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        ok = (value >= least if least_allowed else value > least) and value < float("inf")
        if not ok:  # nan fails both comparisons
            return f"--{dest.replace('_', '-')} must be a number {'>=' if least_allowed else '>'} {least}, not {value}"
    return None


def _token(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV) or None


# -- broker -------------------------------------------------------------------------------
def _open_broker(db: str | None, lease_seconds: float, worker_ttl: float | None = None) -> Any:
    from ..broker.opening import open_broker

    # a worker whose keep-alives and polls stopped (its process was killed) is pruned from the list
    ttl = worker_ttl if worker_ttl is not None else max(3 * lease_seconds, 120.0)
    if db is None:
        log.warning("no --db given: runs are kept in memory and lost when the broker stops")
    return open_broker(db, lease_seconds=lease_seconds, worker_ttl=ttl)


def broker_main(args: argparse.Namespace) -> int:
    """Serve a broker until SIGTERM/SIGINT; close (flush) it on the way out."""
    token = _token(args)
    if not 0 <= args.port <= 65535:
        print(f"fuseline-nb broker: --port must be between 0 and 65535, not {args.port}", file=sys.stderr)
        return 2
    bad = _bad_numbers(args, {"lease_seconds": (0, False), "worker_ttl": (0, False), "max_body": (1, True)})
    if bad:
        print(f"fuseline-nb broker: {bad}", file=sys.stderr)
        return 2
    if token is not None and not token.strip():
        print(f"fuseline-nb broker: the token (--token or {TOKEN_ENV}) is only whitespace: give a "
              "real secret of 16 or more random characters", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not token:
        print(f"fuseline-nb broker: refusing to listen on {args.host!r} without a token: anyone who "
              f"can reach it could run code on your workers. Pass --token or set {TOKEN_ENV}.",
              file=sys.stderr)
        return 2
    if token and len(token) < 16:
        log.warning("the token is short (%d characters); use 16 or more random characters", len(token))
    try:
        import uvicorn

        from ..broker.http import create_app
    except ImportError as exc:
        print(f"fuseline-nb broker needs the service extra: pip install 'fuseline-nb[service]' ({exc})",
              file=sys.stderr)
        return 2
    from ..errors import FuselineError

    try:
        broker = _open_broker(args.db, args.lease_seconds, args.worker_ttl)
    except FuselineError as exc:
        print(f"fuseline-nb broker: cannot open {args.db!r}: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(broker, token=token, max_body=args.max_body)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                timeout_keep_alive=75, timeout_graceful_shutdown=5, access_log=False)
        print(f"fuseline-nb broker on http://{args.host}:{args.port} "
              f"({'DuckDB ' + args.db if args.db else 'memory'}; token {'on' if token else 'off'})",
              file=sys.stderr, flush=True)
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again under
        # the handlers it found: make those no-ops, so the broker is closed (flushed) below.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        uvicorn.Server(config).run()
    finally:
        broker.close()
    return 0


# -- worker -------------------------------------------------------------------------------
def worker_main(args: argparse.Namespace) -> int:
    """Start ``--processes`` workers for the broker at ``--broker``; return when stopped."""
    if args.processes < 1:
        print("fuseline-nb worker: --processes must be >= 1", file=sys.stderr)
        return 2
    bad = _bad_numbers(args, {"poll_wait": (0, True), "grace": (0, True), "max_in_flight": (1, True)})
    if bad:
        print(f"fuseline-nb worker: {bad}", file=sys.stderr)
        return 2
    if getattr(args, "max_in_flight", None) is not None and not getattr(args, "dask", None):
        print("fuseline-nb worker: --max-in-flight applies to --dask only: it bounds the steps submitted to the "
              "Dask cluster at once", file=sys.stderr)
        return 2
    url = urlsplit(args.broker)
    if url.scheme not in ("http", "https") or not url.hostname:
        print(f"fuseline-nb worker: --broker must be an http:// or https:// URL, e.g. "
              f"http://127.0.0.1:8000, not {args.broker!r}", file=sys.stderr)
        return 2
    from .loader import load_workflow

    try:
        for spec in args.workflows:
            load_workflow(spec)
    except (ValueError, TypeError) as exc:
        print(f"fuseline-nb worker: {exc}", file=sys.stderr)
        return 2
    token = _token(args)
    if getattr(args, "dask", None):
        from .dask_bridge import bridge_main

        args.token = token
        return bridge_main(args)
    if getattr(args, "verbose", False):
        os.environ["FUSELINE_NB_VERBOSE"] = "1"  # the worker processes log at INFO too
    from ..worker.remote import run_workers

    print(f"fuseline-nb worker: {args.processes} process(es) for {args.broker}", file=sys.stderr, flush=True)
    return run_workers(list(args.workflows), load_workflow, args.broker, token, args.name, args.processes,
                       args.poll_wait, args.grace)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fuseline_nb.cli.service broker|worker ...``: these two commands alone."""
    parser = argparse.ArgumentParser(prog="fuseline-nb")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_parser", "broker_main", "is_loopback", "main", "worker_main"]
