"""The benchmark harness behind ``make bench`` (see docs/BENCHMARKS.md).

Modules run in two interpreters: the orchestrator (``__main__``, ``stages``, ``data``,
``procs``, ``report``, ``llm``) runs in the connector's ``.venv``; the mock endpoint,
the peer clients and the plot (``mock``, ``peer``, ``plot``) run in ``.venv-bench``,
whose packages (openai, litellm, uvloop, matplotlib, py-spy) never shape the connector's
own dependencies. Nothing here imports a module of the other side.
"""
