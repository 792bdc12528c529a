"""One embedded MongoDB-protocol server per state folder, shared by every command (real servers, real
processes): `fetch` while `serve` runs uses serve's server and answers fast, SIGTERM of `serve` leaves no
server behind, the last process using a server stops it whoever started it, and a data folder held by a
process the state file does not know is reported in one line with the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support.online import load_quickstart
from support.paths import PROJECT_ROOT

from feature_assets.dev.services import local
from feature_assets.dev.services.local import find_free_port, local_services, read_services_env, start_mongo
from feature_assets.online.batch_encoding import end_of_day_millis
from feature_assets.online.fetch.fetcher import Fetcher
from feature_assets.online.store import MongoKVStore

pytestmark = pytest.mark.services

AT = end_of_day_millis("2023-11-21") + 1000
FETCH = ["fetch", "--type", "join", "--name", "quickstart/training_set.v2", "-k", '{"user_id":"3"}']


def feature_assets_command() -> list[str]:
    script = Path(sys.executable).parent / "feature-assets"
    return [str(script)] if script.exists() else [sys.executable, "-m", "feature_assets.cli"]


def user_env() -> dict[str, str]:
    """A user's environment without a MongoDB URI: the commands use the embedded server of ./.services."""
    return {name: value for name, value in os.environ.items() if not name.startswith("FEATURE_ASSETS_")}


def run_cli(arguments: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        feature_assets_command() + arguments, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=120
    )
    return result, time.monotonic() - started


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def recorded(state: Path) -> dict[str, str]:
    env_file = state / "services.env"
    return read_services_env(env_file) if env_file.exists() else {}


def servers_on(data_dir: Path) -> list[int]:
    """PIDs of MongoDB-protocol servers running on a data folder."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and local._pid_runs(int(proc.name), f"--storage-path {data_dir} "):
            found.append(int(proc.name))
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def http_fetch(port: int) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/fetch/join/quickstart/training_set.v2?at_millis={AT}",
        data=json.dumps({"user_id": "3"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_fetch_while_serve_runs_uses_its_server_and_sigterm_of_serve_stops_it(tmp_path):
    port, state = find_free_port(), tmp_path / ".services"
    serve = subprocess.Popen(
        feature_assets_command() + ["serve", "--port", str(port)],
        cwd=tmp_path,
        env=user_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz") or serve.poll() is not None, what="serve")
        assert serve.poll() is None, serve.stderr.read().decode()[-3000:]
        uri, mongo_pid = recorded(state)["FEATURE_ASSETS_MONGO_URI"], int(recorded(state)["FEATURE_ASSETS_MONGO_PID"])
        store = MongoKVStore.from_uri(uri)
        load_quickstart(store, "2023-11-20")
        expected = Fetcher(store).fetch_join("quickstart/training_set.v2", {"user_id": "3"}, AT)
        store.close()

        seconds = []
        for _ in range(3):
            result, elapsed = run_cli(FETCH + ["--at-millis", str(AT)], tmp_path)
            assert result.returncode == 0, result.stderr[-3000:]
            assert json.loads(result.stdout) == expected
            seconds.append(elapsed)
        assert min(seconds) < 1.0, f"fetch took {seconds} s with a running server"
        assert http_fetch(port) == expected  # serve still answers
        assert servers_on(state / "mongo-data") == [mongo_pid]  # the fetches started no second server
        assert recorded(state)["FEATURE_ASSETS_MONGO_PID"] == str(mongo_pid)

        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        assert not local._pid_runs(mongo_pid, "secantus"), "serve left its server running"
        assert not (state / "services.env").exists()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def hold_services(cwd: Path) -> subprocess.Popen:
    """A process using the folder's server (`run` wrapping a sleeper), as the UI script does; waits for it."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "feature_assets.dev.services.local", "run", "--no-kafka", "--"]
        + [sys.executable, "-c", "import time; time.sleep(120)"],
        cwd=cwd,
        env=user_env(),
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: "FEATURE_ASSETS_MONGO_USERS" in recorded(cwd / ".services") or holder.poll() is not None)
    assert holder.poll() is None, holder.stderr.read().decode()[-3000:]
    return holder


def test_the_last_process_using_a_server_stops_it_whoever_started_it(tmp_path, monkeypatch):
    state = tmp_path / ".services"
    holder = hold_services(tmp_path)
    try:
        started_by_holder = recorded(state)
        monkeypatch.delenv("FEATURE_ASSETS_MONGO_URI", raising=False)
        with local_services(state, mongo=True, kafka=False) as services:
            assert services.started == [] and services.mongo_uri == started_by_holder["FEATURE_ASSETS_MONGO_URI"]
            assert len(recorded(state)["FEATURE_ASSETS_MONGO_USERS"].split()) == 2
            holder.send_signal(signal.SIGTERM)  # passed on to its command; the holder leaves, we still use it
            holder.wait(30)
            pid = int(started_by_holder["FEATURE_ASSETS_MONGO_PID"])
            assert local._pid_runs(pid, "secantus")
            assert len(recorded(state)["FEATURE_ASSETS_MONGO_USERS"].split()) == 1
        assert not local._pid_runs(pid, "secantus")  # we were the last
        assert recorded(state) == {}
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_data_folder_locked_by_another_process_is_reported_with_the_fix(tmp_path):
    lock_file = tmp_path / ".services" / "mongo-data" / "WiredTiger.lock"
    lock_file.parent.mkdir(parents=True)
    lock_file.touch()
    holder = subprocess.Popen(  # a POSIX lock on the first byte, as WiredTiger takes it
        [sys.executable, "-c", f"import fcntl, os, time\nfd = os.open({str(lock_file)!r}, os.O_RDWR)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_error_line(run_cli(FETCH, tmp_path)[0])
        assert f"is locked by process {holder.pid}" in line and f"kill {holder.pid}" in line, line
    finally:
        holder.kill()
        holder.wait()


def test_a_server_the_state_file_does_not_record_is_reported_with_the_fix(tmp_path):
    foreign = start_mongo(tmp_path / ".services" / "mongo-data", log_path=tmp_path / "foreign.log")
    try:
        line = one_error_line(run_cli(FETCH, tmp_path)[0])
        assert "held by a MongoDB-protocol server" in line and f"kill {foreign.pid}" in line, line
        assert f"export FEATURE_ASSETS_MONGO_URI={foreign.url}" in line, line
    finally:
        foreign.stop()


def test_a_recorded_server_that_does_not_answer_is_reported_with_the_fix(tmp_path):
    holder = hold_services(tmp_path)
    pid = int(recorded(tmp_path / ".services")["FEATURE_ASSETS_MONGO_PID"])
    os.kill(pid, signal.SIGSTOP)
    try:
        line = one_error_line(run_cli(FETCH, tmp_path)[0])
        assert f"(pid {pid}, " in line and "does not answer" in line and f"kill {pid}" in line, line
    finally:
        os.kill(pid, signal.SIGCONT)
        holder.send_signal(signal.SIGTERM)
        holder.wait(30)
    assert not local._pid_runs(pid, "secantus")  # SIGTERM of `run`: its command ends, then its server


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            command = local._command_line(int(proc.name))
            if text in command:
                found.append(f"{proc.name}: {command[:120]}")
    return found


def test_the_ui_script_shares_its_servers_and_sigterm_stops_everything(tmp_path):
    port, state = find_free_port(), tmp_path / "services"
    env = user_env() | {
        "PORT": str(port),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "FEATURE_ASSETS_SERVICES_DIR": str(state),
        "FEATURE_ASSETS_WAREHOUSE": str(tmp_path / "warehouse"),
    }
    ui = subprocess.Popen(
        ["bash", str(PROJECT_ROOT / "scripts" / "ui.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # As a script's background job: SIGINT ignored, which `dagster dev` must not inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/server_info") or ui.poll() is not None, 180, "the UI")
        assert ui.poll() is None, ui.stderr.read().decode()[-3000:]
        mongo_pid = int(recorded(state)["FEATURE_ASSETS_MONGO_PID"])
        result = subprocess.run(
            feature_assets_command() + FETCH, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert "is not in the metadata store" in result.stderr, result.stderr  # it reached the UI's server
        assert servers_on(state / "mongo-data") == [mongo_pid]

        ui.send_signal(signal.SIGTERM)
        ui.wait(60)
        ui_processes = lambda: processes_mentioning(f"-p {port}") + processes_mentioning(f"--port {port}")  # noqa: E731
        wait_for(lambda: not ui_processes(), 30, "the UI's processes to end")
        assert not local._pid_runs(mongo_pid, "secantus") and recorded(state) == {}
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
