"""The audiences benchmark's parts; ``bench/audiences.py`` runs them and its docstring describes
the run. Each module says what it holds:

- ``config``: constants, targets, the shape of the data, the audiences defined, the plan;
- ``backends``: SQLite + the file-system broker and PostgreSQL + Redis;
- ``data``: the seed role: users and events written in bulk;
- ``roles``: the roles that run inside Django: setup, the first computation, the window pass,
  the live audiences and the worker-side re-evaluation;
- ``ingest``: the ingest phase: the web server with and without live audiences, A/B rounds;
- ``phases``: every phase against one backend;
- ``report``: what was measured, on the console and as the section of docs/benchmarks.md;
- ``cli``: the command line and the whole run.
"""
