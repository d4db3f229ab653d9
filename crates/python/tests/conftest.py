import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def dlt_bin():
    """The `dlt` CLI of this workspace (DLT_BIN, or target/release/dlt), for comparisons;
    tests that need it skip when it has not been built, and fail instead under CI (set by
    .ci/run, which builds it first)."""
    cand = os.environ.get("DLT_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "dlt"
    )
    if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
        cand = shutil.which("dlt")
    if not cand:
        msg = "the dlt CLI is not built (cargo build --release -p dlt)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; under CI the comparison must run")
        pytest.skip(msg)
    return cand
