"""The report's fixed prose: how to read the tables, and how to run the bench (its stages and switches)."""

HOW_TO_READ = """\
**How to read this.** Every client is a separate process pinned to core 0 (`taskset -c 0`); the mock
endpoint (uvloop, a raw asyncio protocol returning a canned chat completion after the latency named in
its URL path) runs pinned to core 1 (`taskset -c 1`) with the harness, which only reads pipes. So each
client has one core, as the issue's targets assume.

- `rows/s` is the steady-state rate: for the connector from its STREAM_STATUS STARTED message (config
  loaded, imports done) to its exit; for the peers, their timed request loop. `rows/s end to end`
  divides by the whole process's wall time, start-up included (the connector pays ~0.3 s of interpreter
  and imports, litellm several seconds): that weighs on runs of a few seconds, not on a million rows.
- `× raw` is the ratio to the raw aiohttp loop in the same cell: the practical limit of one Python core
  with an HTTP library, the issue's yardstick. The raw asyncio streams loop (`bench/peer.py --client
  streams`: keep-alive HTTP/1.1 written by hand on asyncio streams, only what the mock needs, no timeouts)
  is the wire's floor below it, and what the connector's own HTTP client (connector/endpoint/http11.py)
  is built on.
  The ideal rate is `in flight / latency` (2,560 rows/s for 128 at 50 ms); below it a client is CPU-bound.
- `CPU µs/row` is the user+sys CPU of the whole client process (from `wait4`: start-up included, minus
  nothing) divided by rows; `after start-up` subtracts the CPU spent before the first request.
  `peak RSS` is the process's maximum resident set (the harness stays small, because Linux reports a
  child's peak as at least its parent's size at fork); "–" where the reading was no more than the
  harness's own size at fork (~50 MB), so it would be the harness's: the raw aiohttp loop's is about that.
- `mock CPU %` is the mock's CPU over the run: far below 100 % means the mock was not the bottleneck.
  `others' CPU %` is what processes other than the bench used of the whole machine (2 cores) during the
  run (median). Pinning keeps a core for a client only if nobody else wants it: a cell with a high figure
  there was disturbed by other work on this shared machine; read it with care.
- Every client sends the same request bodies (built by the connector's own template code). The connector
  runs with its defaults, including its answer cache (sqlite), pointed at an empty `XDG_CACHE_HOME` for
  every run so every row is a miss. Every run is checked: a wrong record count, a failed row, or fewer
  requests reaching the mock than rows (answers from a cache) aborts the bench with a non-zero exit when
  the connector does it; in the matrix a peer that does it (or outlasts the run's bound) gets its cell
  marked "failed: ..." or "hung after N s" instead, and the bench goes on.
- Medians of N runs hide run-to-run spread of 10-20 % here; `BENCH_QUICK=1` only checks the harness."""


STAGES_DOC = """\
**Running it.** `make bench` runs `.venv/bin/python -m bench`. It creates `.venv-bench` (openai, litellm,
aiohttp, orjson, pyarrow, uvloop, matplotlib, py-spy) and `.venv-curator` on first use, starts the mock,
runs the stages, stops the mock by PID, prints this report and writes it here with
`throughput_vs_concurrency.png`. Each stage's latest result is kept in `bench/results/<stage>.json`, so a
stage run alone updates only its section.
Environment:

- `BENCH_QUICK=1`: 1 run, 1,000 rows (500 at 500 ms); no million, llama.cpp or profile stage unless
  switched on. A harness check (~2 minutes), not a measurement.
- `BENCH_RUNS=N` (default 3), `BENCH_ROWS=N` (default 5,000), `BENCH_ROWS_500=N` (rows of the 500 ms
  cells, default 2,000: those runs are latency-bound, fewer rows say as much).
- The matrix: 50 ms at 128, 512 and 2,048 in flight, 500 ms at 128 and 512; the connector, the raw aiohttp
  loop, Curator (from `.venv-curator`, made on first use like `.venv-bench`), AsyncOpenAI and litellm.
  `BENCH_RUN_TIMEOUT_S=N` bounds each run (default 30 s + 30 ms a row: 180 s for 5,000 rows): a peer past
  it is killed and its cell says "hung after N s", a peer that fails says "failed: <why>", and neither is
  run again in that cell; the connector hanging or failing still stops the bench.
- `BENCH_MILLION=1|0`: the 1,000,000-row stage (~10 minutes). On by default in a full run, off in a quick
  one. `BENCH_MILLION_ROWS` and `BENCH_MILLION_CONCURRENCY` (default 512) change it.
- `BENCH_LLM=1|0`: the real llama.cpp server; on by default in a full run when it is installed
  (`make local-llm` installs it; the bench never compiles it). `BENCH_LLM_ROWS` (default 24): with so
  few rows the connector's fixed cost per run (opening the input, shutting down: inside its steady
  window, outside the direct client's timed loop) is a few % of a ~5 s run.
- `packing` (rows_per_request 1, 10, 50 and auto against bench/packmock.py; `BENCH_PACK_ROWS`, default
  1,000, ~1 minute) and `packing_live` (the same against llama.cpp, switched by `BENCH_LLM`;
  `BENCH_PACK_LIVE_ROWS`, default 200, several minutes): bench/packing.py, run alone with
  `python -m bench packing packing_live`.
- `BENCH_PROFILE=1|0`: py-spy and cProfile of the connector; on by default in a full run.
- `BENCH_SCAN_MB=N`: the size of the CSV and JSONL files the scan stage discovers (default 1,024; 64 in a
  quick run). The files are written into the bench's temporary folder and deleted after.
- `BENCH_RATE_ROWS=N` (default 1,200; 120 in a quick run), `BENCH_RATE_RPM=N` (default 600): the rate-limit
  stage (~6 minutes), in its own `.venv-curator` (bespokelabs-curator, aiohttp, tiktoken: Curator pins older
  litellm and aiohttp than the peers above get; the matrix runs Curator from it too).
  `BENCH_COOKBOOK=<path>`: a copy of OpenAI's cookbook
  `examples/api_request_parallel_processor.py`, run as one more client (not shipped with the project).
- `BENCH_REMOTE_MB=N` (default 1,024; 64 quick), `BENCH_REMOTE_PG_ROWS=N` (default 1,000,000; 100,000
  quick), `BENCH_REMOTE_ENRICH_ROWS=N` (default 20,000; 2,000 quick): the remote stage's Parquet file (read
  locally and from moto's S3 server), PostgreSQL table, and the rows `read` enriches from each at 512 in
  flight. Needs `make storage` (moto; PostgreSQL from Debian).
- `BENCH_CONNECTOR_REF=<commit>` (e.g. `HEAD`): measure the connector as committed there, exported with
  `git archive` and run by the same `.venv` (`python -m connector`), instead of the working tree, which
  other people may be editing mid-run.
- `BENCH_BASELINE_REF=<commit>`: also measure the connector as committed there (exported the same way), as
  one more client in the matrix's rotation, and judge "CPU per row no worse than that commit" from the same
  run. Runs on one VM drift by 2x from day to day; only a comparison inside one run says anything.
- Stages can also be named: `.venv/bin/python -m bench million` runs that one alone
  (capacity, matrix, sweep, spec, cold, million, llm, profile, scan, ratelimits, remote); `.venv/bin/python -m
  bench.cold [RUNS]` measures the cold start alone, against its own mock, and `.venv/bin/python -m
  bench.ratelimits [ROWS [RPM]]` the rate limits alone."""
