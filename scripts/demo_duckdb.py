#!/usr/bin/env python3
"""Load the demo's enriched Parquet file into a DuckDB table and run one query on it.

    python scripts/demo_duckdb.py out/demo_enriched.parquet out/demo.duckdb

The last step of ``make demo``: the records land in a real table (``reviews`` in the DuckDB
file, which stays for you to query), with the column types the connector wrote, and one
query prints the labels beside the star ratings. DuckDB comes from PyPI as the ``demo`` extra
(pyproject.toml), a dependency of the demo only.
"""

from __future__ import annotations

import sys

import duckdb

# Input columns typed by the connector's scan, its answer columns, and some of its metadata.
SHOWN = ("rating", "review_date", "sentiment", "topic", "_status", "_cached", "_prompt_tokens", "_cost",
         "_latency_ms")
LOAD = "CREATE OR REPLACE TABLE reviews AS FROM read_parquet(?)"
QUERY = """\
SELECT sentiment, count(*) AS reviews, round(avg(rating), 2) AS avg_stars,
       count(*) FILTER (WHERE rating <= 2) AS "1-2 stars",
       count(*) FILTER (WHERE rating = 3) AS "3 stars",
       count(*) FILTER (WHERE rating >= 4) AS "4-5 stars"
FROM reviews GROUP BY sentiment ORDER BY reviews DESC"""


def main(argv: list[str]) -> int:
    parquet, database = argv
    with duckdb.connect(database) as con:
        con.execute(LOAD, [parquet]).fetchall()
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'reviews'").fetchall())
        [(rows,)] = con.execute("SELECT count(*) FROM reviews").fetchall()
        shown = [f"{name} {types[name]}" for name in SHOWN if name in types]
        print(f"table reviews in {database}: {rows} rows, {len(types)} columns, among them "
              + ", ".join(shown))
        print()
        print("\n".join("  " + line for line in QUERY.splitlines()))
        con.sql(QUERY).show()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
