"""A Spark standalone cluster from the pyspark package (a master and workers as separate JVM processes), and a
Python environment for its executors that has the project's dependencies but not the project."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
DAEMON_HEAP = "-Xmx384m"  # the master and the workers only schedule; executors get their own JVMs
MASTER_READY = "I have been elected leader"
WORKER_READY = "Successfully registered with master"


@dataclass
class StandaloneCluster:
    master_url: str
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)  # by log name

    def log_tails(self, lines: int = 30) -> str:
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            tails.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)


def cluster_environment() -> dict[str, str]:
    """The daemons' environment: nothing that points Python at this checkout."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_CONF_DIR")
        and not name.startswith("FEATURE_ASSETS_")
    }
    # What bin/load-spark-env.sh exports for the launcher that builds executors' commands.
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_SCALA_VERSION=scala_version(), SPARK_LOCAL_IP="127.0.0.1")
    return env


def scala_version() -> str:
    """The Scala version of the pyspark package's jars (spark-launcher_2.13-4.0.0.jar -> 2.13)."""
    [launcher] = (SPARK_HOME / "jars").glob("spark-launcher_*.jar")
    return launcher.name.split("_", 1)[1].split("-", 1)[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def standalone_cluster(
    root: Path, workers: int = 2, cores: int = 1, memory: str = "1g", timeout: float = 60.0
) -> Iterator[StandaloneCluster]:
    """Run a master and `workers` workers (each `cores` cores and `memory`) while the block runs, with their
    working directories and logs under `root` (outside the checkout). Every process is stopped on exit, the
    executors with their worker (each daemon leads its own process group)."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", logs)
    java = [_java(), DAEMON_HEAP, "-cp", f"{SPARK_HOME / 'jars'}/*"]
    # Port 0: the web UIs take any free port, so parallel test runs do not collide on 8080/8081.
    master = ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"]
    try:
        _start(cluster, java + master, root, logs / "master.log")
        _wait_for(cluster, logs / "master.log", MASTER_READY, timeout)
        for index in range(workers):
            work_dir = root / f"worker-{index}"
            work_dir.mkdir(exist_ok=True)
            worker = [
                "org.apache.spark.deploy.worker.Worker",
                cluster.master_url,
                *("--host", "127.0.0.1", "--port", "0", "--webui-port", "0"),
                *("--cores", str(cores), "--memory", memory, "--work-dir", str(work_dir)),
            ]
            _start(cluster, java + worker, work_dir, logs / f"worker-{index}.log")
        for index in range(workers):
            _wait_for(cluster, logs / f"worker-{index}.log", WORKER_READY, timeout)
        yield cluster
    finally:
        _stop(list(cluster.processes.values()))


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


def _start(cluster: StandaloneCluster, command: list[str], cwd: Path, log: Path) -> None:
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=cluster_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.processes[log.stem] = process


def _wait_for(cluster: StandaloneCluster, log: Path, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in log.read_text(errors="replace"):
            return
        exited = [name for name, process in cluster.processes.items() if process.poll() is not None]
        if exited:
            raise RuntimeError(f"{', '.join(map(str, exited))} exited early\n{cluster.log_tails()}")
        time.sleep(0.2)
    raise TimeoutError(f"no {line!r} in {log.name} after {timeout:.0f}s\n{cluster.log_tails()}")


def _stop(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM to each daemon's process group (the daemon and the executors it started), then SIGKILL."""
    for process in reversed(processes):  # workers before the master
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # also executors that outlived their worker
        process.wait()


def _signal_group(process: subprocess.Popen, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal_number)


def executor_python(root: Path) -> Path:
    """A Python for executors, as a user provides on each worker: this interpreter's version with the
    project's dependencies (this environment's site-packages, added by a .pth file, whose own .pth files,
    such as the editable install of this project, are not run), but without `feature_assets`."""
    environment = root / "executor-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True, capture_output=True)
    python = environment / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site_packages, "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python
