"""Compiled-config pieces (Chronon's JSON) for tests that build configs by hand."""

from __future__ import annotations


def query(selects, time_column=None, mutation_time_column=None, reversal_column=None):
    return {
        "endPartition": None,
        "mutationTimeColumn": mutation_time_column,
        "reversalColumn": reversal_column,
        "selects": selects,
        "setups": [],
        "startPartition": None,
        "timeColumn": time_column,
        "wheres": [],
    }


def meta(name):
    return {
        "dependencies": [],
        "name": name,
        "online": False,
        "outputNamespace": "default",
        "production": False,
        "schemaVersion": 1,
        "tableProperties": {},
        "team": "rnd",
    }
