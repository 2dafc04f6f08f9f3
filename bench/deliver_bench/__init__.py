"""The delivery benchmark's parts; ``bench/deliver.py`` runs them and its docstring describes
the run. Each module says what it holds:

- ``config``: constants, worker configs (``POOL:PROCESSESxCONCURRENCYxDELIVERY_CONCURRENCY``)
  and the plan of a run;
- ``refiner``: the fake Refiner server and the ceiling's plain client (child-process roles);
- ``app``: the roles that run inside Django: the source and destination, the seeded events;
- ``backends``: PostgreSQL + Redis and SQLite + the file-system broker;
- ``workers``: the Celery worker processes and what their logs say about tasks;
- ``load``: phase 3's open-loop HTTP client;
- ``results``: what each phase measured;
- ``phases``: the three phases against one backend;
- ``report``: the section of docs/benchmarks.md;
- ``cli``: the command line and the whole run.
"""
