"""The project installed as a wheel (not editable) works from any folder: compile and backfill a new feature
repo with no settings file, with every default path coming from the environment or the working directory.

The fresh virtualenv gets the dependencies already installed in the project's environment through a `.pth`
line (plain paths only, so the editable install of the repo stays invisible); `feature_assets` itself
comes from a wheel built from a copy of the sources.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.paths import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.spark]

# What a wheel is built from; the copy keeps build/ and *.egg-info out of the working tree.
BUILD_INPUTS = ("pyproject.toml", "README.md", "feature_assets")
TEAM = "shop"
SOURCE_TABLE = "data.clicks"
DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(8)]
START_DS, END_DS = "2024-01-05", "2024-01-08"
CLICKS_PER_DAY = 6
# Chronon's naming: `<namespace>.<team>_<file>_<version>`, namespace `default`.
JOIN_OUTPUT = Path("default") / f"{TEAM}_training_v1"
TIMEOUT = 900


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def describe(result: subprocess.CompletedProcess) -> str:
    return (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )


def build_wheel(workdir: Path) -> Path:
    source = workdir / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = PROJECT_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    dist = workdir / "dist"
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)])
    assert result.returncode == 0, describe(result)
    (wheel,) = dist.glob("feature_assets-*.whl")
    return wheel


def create_venv(workdir: Path, wheel: Path) -> Path:
    """A venv without system site-packages, holding the wheel; dependencies come from the project's venv."""
    venv = workdir / "venv"
    result = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert result.returncode == 0, describe(result)
    python = venv / "bin" / "python"
    install = ["install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    result = run([sys.executable, "-m", "pip", "--python", str(python), *install])
    assert result.returncode == 0, describe(result)
    where = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=clean_env())
    site_packages = Path(where.stdout.strip())
    dependencies = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "_project_dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without anything pointing at the repo or at other settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
        and not key.startswith("FEATURE_ASSETS_")
    }
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("install")
    return create_venv(workdir, build_wheel(workdir))


def write_clicks(warehouse: Path) -> None:
    namespace, name = SOURCE_TABLE.split(".")
    for day in DAYS:
        start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
        rows = range(CLICKS_PER_DAY)
        table = pa.table(
            {
                "ts": pa.array([start + (i + 1) * 3_600_000 for i in rows], pa.int64()),
                "click_id": [f"{day.isoformat()}-{i}" for i in rows],
                "user_id": [f"u{i % 3}" for i in rows],
                "amount": pa.array([10 * i + day.day for i in rows], pa.int64()),
            }
        )
        partition = warehouse / namespace / name / f"ds={day.isoformat()}"
        partition.mkdir(parents=True)
        pq.write_table(table, partition / "part-00000.parquet")


GROUP_BY = f'''
    """Clicks: what a user spent lately."""
    from feature_assets.api import Aggregation, EventSource, GroupBy, Operation, Query, TimeUnit, Window, select

    source = EventSource(
        table="{SOURCE_TABLE}",
        query=Query(selects=select("user_id", "amount"), time_column="ts"),
    )

    v1 = GroupBy(
        sources=[source],
        keys=["user_id"],
        aggregations=[
            Aggregation(input_column="amount", operation=Operation.SUM,
                        windows=[Window(length=3, time_unit=TimeUnit.DAYS)]),
            Aggregation(input_column="amount", operation=Operation.COUNT),
        ],
    )
'''

JOIN = f'''
    """Training set: each click with the user's features as of that click."""
    from feature_assets.api import EventSource, Join, JoinPart, Query, select
    from group_bys.{TEAM}.clicks import v1 as clicks_v1

    source = EventSource(
        table="{SOURCE_TABLE}",
        query=Query(selects=select("user_id", "click_id"), time_column="ts"),
    )

    v1 = Join(left=source, right_parts=[JoinPart(group_by=clicks_v1)], row_ids=["click_id"])
'''


def write_feature_repo(repo: Path) -> None:
    for folder, file, text in (("group_bys", "clicks.py", GROUP_BY), ("joins", "training.py", JOIN)):
        (repo / folder / TEAM).mkdir(parents=True)
        (repo / folder / TEAM / file).write_text(textwrap.dedent(text).lstrip())


def test_installed_package_is_the_wheel_not_the_repo(venv, tmp_path):
    python = venv / "bin" / "python"
    result = run(
        [str(python), "-c", "import feature_assets; print(feature_assets.__file__)"], cwd=tmp_path, env=clean_env()
    )
    assert result.returncode == 0, describe(result)
    location = Path(result.stdout.strip()).resolve()
    assert location.is_relative_to(venv.resolve() / "lib"), f"feature_assets imported from {location}"
    assert not location.is_relative_to(PROJECT_ROOT.resolve()), f"feature_assets imported from the repo: {location}"


def test_compile_and_backfill_a_new_feature_repo(venv, tmp_path):
    repo, warehouse, dagster_home = tmp_path / "repo", tmp_path / "warehouse", tmp_path / "dagster_home"
    write_feature_repo(repo)
    write_clicks(warehouse)
    dagster_home.mkdir()
    python = str(venv / "bin" / "python")
    env = clean_env(
        FEATURE_ASSETS_WAREHOUSE=str(warehouse),
        DAGSTER_HOME=str(dagster_home),
        PYSPARK_PYTHON=python,
        PYSPARK_DRIVER_PYTHON=python,
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    cli = str(venv / "bin" / "feature-assets")
    assert not (repo / "feature_repo.yaml").exists()

    compiled = run([cli, "compile", "--conf", f"joins/{TEAM}/training.py"], cwd=repo, env=env)
    assert compiled.returncode == 0, describe(compiled)
    conf = Path("production") / "joins" / TEAM / "training.v1"
    assert (repo / conf).is_file(), describe(compiled)

    backfill = run(
        [cli, "backfill", "--conf", str(conf), "--start-ds", START_DS, "--end-ds", END_DS], cwd=repo, env=env
    )
    assert backfill.returncode == 0, describe(backfill)
    output = warehouse / JOIN_OUTPUT
    expected = [f"ds={day.isoformat()}" for day in DAYS if START_DS <= day.isoformat() <= END_DS]
    found = sorted(path.name for path in output.glob("ds=*")) if output.is_dir() else []
    assert found == expected, f"{output}: {found}\n{describe(backfill)}"
    assert pq.read_table(output / expected[0]).num_rows == CLICKS_PER_DAY
    written_beside_package = [
        path
        for path in venv.glob("lib/*/site-packages/*")
        if path.name in ("data", ".dagster_home", ".services", "spark-warehouse")
    ]
    assert not written_beside_package, written_beside_package
