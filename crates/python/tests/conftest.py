import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def dlt_bin():
    """The `dlt` CLI of this workspace (DLT_BIN, or target/release/dlt), for comparisons;
    tests that need it skip when it has not been built."""
    cand = os.environ.get("DLT_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "dlt"
    )
    if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
        cand = shutil.which("dlt")
    if not cand:
        pytest.skip("the dlt CLI is not built (cargo build --release -p dlt-cli)")
    return cand
