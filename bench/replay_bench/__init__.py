"""The replay benchmark's parts; ``bench/replay.py`` runs them and its docstring describes the
run. What it shares with the delivery benchmark (the fake Refiner, the backends, the worker
processes, the Django roles' ingest path, the open-loop load) it imports from
``deliver_bench``. Each module says what it holds:

- ``config``: constants, the workers ``manage.py start`` runs and the plan of a run;
- ``roles``: the roles that run inside Django (history, destination, replay start and cancel);
- ``database``: what the bench reads of the backend's tables (a replay's job and rows);
- ``results``: what each phase measured, and the targets;
- ``phases``: the four phases against one backend;
- ``report``: the console table and the section of docs/benchmarks.md;
- ``cli``: the command line and the whole run.
"""
