"""What the benchmark scripts share, one concern per module. Imported by the scripts in bench/
and their packages (``python bench/x.py`` puts bench/ on ``sys.path``, so this package is
``measure``); each names the module it takes from (``from measure.cpu import CpuMeter``):

- ``paths``: the repository root and docs/benchmarks.md;
- ``proc``: processes and the machine as /proc shows them: children, CPU time, memory;
- ``cpu``: the cores a phase kept busy (``CpuMeter``), and waiting for a quiet machine;
- ``stats``: percentiles;
- ``load``: the requests and the open loop of a load generator;
- ``machine``: the machine's description, for the docs;
- ``profiler``: py-spy profiling of a phase's processes;
- ``postgres``: PostgreSQL databases of the bench's own;
- ``app``: the app's settings (the environment it gets), Django in a bench process, ``manage.py``;
- ``servers``: the app's processes: process groups and ``manage.py start``;
- ``docs``: the scripts' sections of docs/benchmarks.md.
"""
