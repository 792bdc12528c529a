"""`dagster dev` on a feature repo, started as scripts/ui.sh starts it (with the embedded servers), in its own
process group so that the webserver, the daemon and the code server all stop at teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from feature_assets.dev.services.local import LOOPBACK, find_free_port
from support.paths import PROJECT_ROOT

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0
LOG_TAIL_CHARS = 4000
LOCATION_STATUS = """{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


@dataclass
class DagsterUI:
    url: str
    process: subprocess.Popen
    log_path: Path

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if self.log_path.exists() else ""


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _wait_until_loaded(ui: DagsterUI, timeout: float) -> None:
    """Until the webserver answers and every code location has loaded (a failed load is an error at once)."""
    deadline = time.monotonic() + timeout
    while True:
        if ui.process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {ui.process.returncode}:\n{ui.log_tail()}")
        try:
            entries = ui.graphql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            entries = []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            if errors:
                raise AssertionError(f"code location failed to load: {errors}")
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"dagster dev did not load within {timeout:.0f}s:\n{ui.log_tail()}")
        time.sleep(0.5)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group (the services wrapper stops its servers), SIGKILL to what is left after a while."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children in the group may still be stopping.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@contextmanager
def running_dagster_ui(env: dict[str, str], cwd: Path, log_path: Path) -> Iterator[DagsterUI]:
    """`dagster dev -w workspace.yaml` with the embedded servers, on a free loopback port; stopped on exit."""
    port = find_free_port()
    command = [
        sys.executable, "-m", "feature_assets.dev.services.local", "run", "--",
        _bin("dagster"), "dev", "-w", str(WORKSPACE), "-h", LOOPBACK, "-p", str(port),
    ]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    ui = DagsterUI(f"http://{LOOPBACK}:{port}", process, log_path)
    try:
        _wait_until_loaded(ui, START_TIMEOUT)
        # The first-visit pop-up would cover the pages in every screenshot.
        ui.graphql("mutation { setNuxSeen }")
        yield ui
    finally:
        _stop_group(process)
