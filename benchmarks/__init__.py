"""Benchmarks of coldoc_tasks against the task runners users would pick instead.

Data flow of one run (``python -m benchmarks [--quick]``)::

    driver ──spawns──> python -m benchmarks.run_one SYSTEM WORKLOAD   (a fresh process each)
                          │  adapter.start(): servers, workers (loopback only, own process groups)
                          │  workload(adapter): run (submit) ... then wait (collect), timed
                          │  adapter.stop(): always, also on SIGTERM / Ctrl-C
                          └──JSON on stdout──> driver ──> results.json
                                                        ──> docs/benchmarks.md + docs/img/*.png

Modules, one concern each: :mod:`.bench_tasks` (what the workers run),
:mod:`.adapters` (one small run/wait shape over every system),
:mod:`.services` (starting and always stopping servers), :mod:`.memory`
(RSS/PSS of process trees), :mod:`.workloads` (W1-W5 and the scale runs),
:mod:`.run_one` (one system, one workload), :mod:`.driver` (the whole run),
:mod:`.report` and :mod:`.plots` (the outputs).
"""
