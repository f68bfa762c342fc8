"""Shared test fixtures: paths to the shared real data and a local S3 (moto) server."""

from __future__ import annotations

import io
import logging
import os
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One BLAS thread per process, set before NumPy loads: on a 2-core machine the dense reference
# eigensolver with several threads per process ran >10x slower than with one.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
try:  # let the tests run from a plain checkout too (no `pip install -e .`)
    import rayfold  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the venv was set up
    sys.path.insert(0, str(REPO_ROOT / "src"))

def _shared_data_dir() -> Path:
    """../shared/data beside the checkout (as in CI), unless RAYFOLD_SHARED_DATA says otherwise."""
    if "RAYFOLD_SHARED_DATA" in os.environ:
        return Path(os.environ["RAYFOLD_SHARED_DATA"])
    return REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()
EXAMPLES_AFDB = REPO_ROOT / "examples" / "afdb"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (skips the test when it is not mounted)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not available at {SHARED_DATA}")
    return SHARED_DATA


def add_tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"", **kw: object) -> None:
    """Add a member to a tar being built in a test (`kw`: TarInfo fields such as type or linkname)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if data else None)


@dataclass
class S3Server:
    """A running moto S3 server; AWS_* variables point at it for the whole session."""

    endpoint_url: str
    _buckets: list[str] = field(default_factory=list)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self._buckets.append(name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Upload bytes; returns the s3:// URI."""
        self.client().put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def delete(self, bucket: str, key: str) -> None:
        self.client().delete_object(Bucket=bucket, Key=key)


_AWS_VARS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Session-wide moto S3 server on 127.0.0.1 (random port) with dummy credentials in os.environ.

    moto is a test dependency (`.[test]`): missing, it fails every S3 and Ray test loudly instead of
    skipping them (`ray_local` starts after this server, so Ray workers inherit the AWS variables).
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    names = [*_AWS_VARS, "AWS_ENDPOINT_URL", *_AWS_UNSET]
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(_AWS_VARS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for k in _AWS_UNSET:
        os.environ.pop(k, None)
    try:
        yield S3Server(endpoint_url=endpoint)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="session")
def ray_local(s3_server: S3Server) -> Iterator[None]:
    """A private local Ray instance for the session (own temp dir, no dashboard, auth off).

    Depends on `s3_server` so that the AWS variables are already in the environment that Ray's
    worker processes inherit when they start.
    """
    import logging as _logging
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        yield
        return
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a token in ~/.ray must not break a private instance
    temp_dir = tempfile.mkdtemp(prefix="rf-ray-", dir="/tmp")  # short: Ray's socket paths are limited
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        logging_level=_logging.WARNING,
        _temp_dir=temp_dir,
    )
    try:
        yield
    finally:
        ray.shutdown()
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth
        shutil.rmtree(temp_dir, ignore_errors=True)
