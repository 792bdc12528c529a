"""`fetch` refuses keys that are not JSON with one line naming the command and the argument, exit code 2,
before it reaches any store."""

from __future__ import annotations

from feature_assets.cli import main


def test_keys_that_are_not_json(capsys):
    assert main(["fetch", "--type", "join", "--name", "quickstart/training_set.v2", "-k", "{user_id:5}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("feature-assets fetch: -k is not valid JSON: ")
