"""Hyperparameter sweeps on Optuna: `python run.py sweep` / `python run.py report`.

space.py     search-space entries (grid, int/float/log ranges, categories) and their checks
spec.py      the sweep config file: base experiment, space, objective, sampler, pruner, seeds
storage.py   where the study lives: a journal file in the sweep dir, or an RDB URL (PostgreSQL)
journal_file.py  the journal file: flock, and a torn final record cut off before it is appended to
study.py     the Optuna study: sampler, pruner, identity of a resumed sweep, trial bookkeeping
worker.py    one worker process: claim an interrupted trial or ask for a new one, train it
claims.py    who runs a trial: its lock (and, for other machines' sweep dirs, its heartbeat)
failures.py  a failure of the point (recorded) or of the environment (the trial is put back)
files.py     DIR/sweep.json and the atomic writes of the sweep dir's files
launcher.py  --workers N: worker processes pinned to their share of CPUs / GPUs
report.py    report.md and plots/ of a sweep
cli.py       the `sweep` and `report` verbs of run.py
"""
