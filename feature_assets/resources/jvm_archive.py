"""A class-data sharing archive of the Spark driver JVM's classes, so local sessions start faster.

Most of a local SparkSession's start (5-6 s of about 11 s to the first job on a 2-core machine) is the JVM
loading and verifying Spark's classes. Java 17 can dump the classes a run loaded into an archive
(`-XX:ArchiveClassesAtExit`) and map it at the next start (`-XX:SharedArchiveFile`): measured here, a
session and its first jobs went from about 11 s to about 7.5 s. Every command that starts Spark gains
that, and the test suite starts Spark in dozens of subprocesses.

The archive is only valid for the JVM and the Spark jars it was dumped with, so its file name carries a
digest of both (`archive_path`); a change of either means a new file, and a session uses the archive only
when one exists for exactly its JVM and jars (`java_options`). `feature_assets.dev.jvm_archive` builds it
(the setup script runs it once per environment) and publishes it by an atomic rename: a JVM must never map
a half-written archive (it crashes on one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

ARCHIVE_DIR_ENV = "FEATURE_ASSETS_JVM_ARCHIVE_DIR"
# Java's own notices about the archive (a mismatch after an upgrade, classes it skipped) are not the
# user's business: the JVM then simply loads the classes as usual.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_dir() -> Path:
    """Beside the environment the jars are installed in (a virtualenv: removed with it), else the user cache."""
    configured = os.environ.get(ARCHIVE_DIR_ENV)
    if configured:
        return Path(configured)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "share" / "feature-assets"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "feature-assets"


def _java_binary() -> Path | None:
    """The java Spark's launcher runs: $JAVA_HOME/bin/java, else java on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def _spark_jars() -> list[Path]:
    home = os.environ.get("SPARK_HOME")
    if not home:
        spec = importlib.util.find_spec("pyspark")
        if spec is None or spec.origin is None:
            return []
        home = str(Path(spec.origin).parent)
    return sorted((Path(home) / "jars").glob("*.jar"))


def archive_path() -> Path | None:
    """Where the archive for this JVM and these Spark jars is (or would be); None without java or jars."""
    java, jars = _java_binary(), _spark_jars()
    if java is None or not jars:
        return None
    digest = hashlib.sha256()
    for path in [java, *jars]:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return archive_dir() / f"spark-driver-{digest.hexdigest()[:16]}.jsa"


def java_options() -> str:
    """Driver JVM options that map the archive, or "" when there is none for this JVM and these jars."""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"
