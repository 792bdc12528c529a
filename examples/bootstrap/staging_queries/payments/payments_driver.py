"""The seed's `payments_driver`: the model's requests (the quickstart's checkouts), one row per request id.

`rng` is a fixed pseudo-random number per request, kept with the row so that a downsample (`rng < 0.05`) picks
the same rows in every run; `label` stands for the outcome the model learns (here 1 for about a fifth of rows).
v2 reads the same requests as v1: the new model version is trained on the same events.
"""

from feature_assets.api import StagingQuery

QUERY = """
    SELECT request_id, user_id, ts, ds,
           CAST(abs(hash(request_id)) % 1000 AS DOUBLE) / 1000 AS rng,
           CAST(abs(hash(request_id, 'label')) % 5 = 0 AS INT) AS label
    FROM data.checkouts
    WHERE ds BETWEEN '{{ start_date }}' AND '{{ end_date }}'
"""

v1 = StagingQuery(query=QUERY, start_partition="2023-11-01")
v2 = StagingQuery(query=QUERY, start_partition="2023-11-01")
