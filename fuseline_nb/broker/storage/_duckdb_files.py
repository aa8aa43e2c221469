"""Big results of a DuckDB history, kept in files beside it.

DuckDB holds a BLOB of N bytes several times over while it inserts it (about
6x for one 64 MB value, measured; chunking it into rows still ~4x) and keeps
it in its buffer cache afterwards. So a result whose pickle is bigger than
:data:`FILE_BYTES` is written to its own file in ``<history>.values/``
(straight from the value's bytes: no copy), and its ``fl_steps`` row holds
the file's name in ``result_file`` instead of the bytes in
``result_pickle``. Reading it back reads the file once. The history is then
the file plus that folder; copy or delete them together.

A file is written (and synced) before the transaction that names it
commits, under a name made from the run and the step, so a retried flush
writes the same file again and a crash leaves at most a file no row names
(and a half-written ``.tmp`` file, removed when the history is opened again).

Examples
--------
>>> import tempfile, os
>>> files = ValueFiles(os.path.join(tempfile.mkdtemp(), "h.duckdb"))
>>> name = files.write(("run-1", "load"), b"x" * 10)
>>> files.read(name), name.endswith(".pickle")
(b'xxxxxxxxxx', True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import xxhash

#: Results pickled bigger than this go to a file beside the history (DuckDB copies BLOBs several times).
FILE_BYTES: Final = 1 << 20


class ValueFiles:
    """The folder ``<history>.values`` of big results (created on the first write)."""

    __slots__ = ("folder",)

    def __init__(self, history: str) -> None:
        self.folder = Path(history + ".values")

    def write(self, key: tuple[str, str], data: bytes) -> str:
        """Write ``data`` as the result of ``key = (run_id, step)``; return the file's name."""
        name = xxhash.xxh3_128_hexdigest(f"{key[0]}\0{key[1]}".encode("utf-8", "surrogateescape")) + ".pickle"
        return self.write_named(name, data)

    def write_named(self, name: str, data: bytes) -> str:
        """Write ``data`` to the file ``name`` in the folder (whole, synced, then renamed into place)."""
        self.folder.mkdir(exist_ok=True)
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)  # from the value's own buffer
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        return name

    def sweep(self) -> int:
        """Remove the files a process that died while writing left (``.<name>.<pid>.tmp``); how many.

        Called where the history is opened for writing: DuckDB lets one process
        hold the file, so no other process is writing into the folder then.
        """
        if not self.folder.is_dir():
            return 0
        gone = 0
        for tmp in self.folder.glob(".*.tmp"):
            try:
                tmp.unlink()
                gone += 1
            except OSError:  # gone already, or not ours to remove: it costs only disk
                continue
        return gone

    def read(self, name: str) -> bytes:
        """The bytes of the file ``name`` (one read of its size).

        Raises
        ------
        OSError
            The file is gone (the folder was not kept with the history).
        """
        return (self.folder / name).read_bytes()


__all__ = ["FILE_BYTES", "ValueFiles"]
