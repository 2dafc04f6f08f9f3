"""The ingest benchmark's parts; ``bench/ingest.py`` runs them and its docstring describes the
run. Each module says what it holds:

- ``config``: constants, targets and the plan of a run;
- ``payloads``: the requests an analytics-python-style client sends;
- ``client``: the asyncio HTTP/1.1 keep-alive client and its closed and open loops;
- ``backends``: SQLite (the embedded default) and PostgreSQL, with the ceiling's inserts;
- ``phases``: every phase against one backend, verified by counting the stored rows;
- ``report``: the section of docs/benchmarks.md;
- ``cli``: the command line and the whole run.
"""
