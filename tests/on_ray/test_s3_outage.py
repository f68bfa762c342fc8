"""The S3 server goes away mid-write (as in a restart) and comes back: the run retries, and its
tables equal those of an undisturbed run, with nothing lost or duplicated.

The outage is made by a TCP proxy in front of the moto server: it drops every open connection and
refuses new ones for a few seconds, which is what clients see while a server restarts; the data
behind it survives, as it would on a real object store."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from conftest import EXAMPLES_AFDB
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import RunConfig
from rayfold.io.storage import read_parquet_dataset
from rayfold.release.run import ReleaseConfig, run_release

pytestmark = pytest.mark.ray

MODELS = sorted(p for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))[:8]
TABLES = {"fragments": "fragment_id", "chains": "source_uri", "members": "fragment_id", "clusters": "cluster_id",
          "manifest": "input_uri", "merges": "fragment_a"}


class FlakyProxy:
    """127.0.0.1:port -> target; `outage(seconds)` closes everything and refuses connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.down = threading.Event()
        self.outages = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if self.down.is_set():  # the server is "restarting": the connection is dropped at once
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def outage(self, seconds: float) -> None:
        self.down.set()
        self.outages += 1
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.open.clear()
        time.sleep(seconds)
        self.down.clear()


def _sorted(table, key):
    return table.sort_by(key).select(sorted(table.column_names))


def test_s3_outage_mid_write_loses_nothing(ray_local, s3_server):
    host, port = s3_server.endpoint_url.rsplit("//", 1)[1].split(":")
    proxy = FlakyProxy(host, int(port))
    bucket = s3_server.create_bucket()
    for p in MODELS:
        s3_server.put(bucket, f"in/{p.name}", p.read_bytes())
    config = ReleaseConfig(cluster=ClusterConfig(engine="builtin"))
    reference = f"s3://{bucket}/reference"
    run_release([f"s3://{bucket}/in/"], reference, config=config, run=RunConfig(unit_size=2), progress=False,
                analytics=False)

    client = s3_server.client()

    def outage_after_first_part() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            listed = client.list_objects_v2(Bucket=bucket, Prefix="flaky/fragments/").get("KeyCount", 0)
            if listed:
                proxy.outage(4.0)
                return
            time.sleep(0.05)

    trigger = threading.Thread(target=outage_after_first_part, daemon=True)
    trigger.start()
    out = f"s3://{bucket}/flaky"
    run_release([f"s3://{bucket}/in/"], out, config=config, run=RunConfig(unit_size=2), progress=False,
                analytics=False, storage_options={"endpoint_url": proxy.url})
    trigger.join(timeout=5)
    assert proxy.outages == 1
    for name, key in TABLES.items():
        a = read_parquet_dataset(f"{out}/{name}")
        b = read_parquet_dataset(f"{reference}/{name}")
        if name == "manifest":
            a, b = a.drop_columns(["unit_id"]), b.drop_columns(["unit_id"])
        assert a.num_rows == b.num_rows, name
        assert _sorted(a, key).equals(_sorted(b, key)), name
