# Image of the docker-compose services user_code, dagster_webserver, dagster_daemon, fetch and the streaming consumers.
# bookworm: Debian 13 (trixie, the newer default of python:3.11-slim) has no openjdk-17 package.
FROM python:3.11-slim-bookworm

# PySpark needs a Java runtime (17 or newer for Spark 4).
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/home \
    FEATURE_ASSETS_WAREHOUSE=/opt/warehouse

WORKDIR /opt/feature_assets

# The package and its dependencies (the `local` extra is not needed: compose runs real servers).
COPY pyproject.toml README.md ./
COPY feature_assets ./feature_assets
RUN pip install .

# The feature repository and the Dagster entry points.
COPY quickstart ./quickstart
COPY repo_defs.py workspace.docker.yaml ./
COPY docker/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
RUN mkdir -p /opt/dagster/storage /opt/warehouse

EXPOSE 4000 3000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-f", "repo_defs.py"]
