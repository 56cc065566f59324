"""The sweep worker in-process, with the training loop replaced (what the worker does with each
result; tests/test_sweep_cli.py runs real trials end to end)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import threading
import types

import numpy as np
import optuna
import pytest

from sweep_helpers import fake_training, load_sweep_config, load_trials, write_sweep

GRID3 = "{'learning_rate': space.grid(1e-3, 2e-3, 3e-3)}"


def _grid(tmp_path, space: str = GRID3, **fields):
  path = write_sweep(tmp_path, space, **{'sampler': 'grid', 'num_trials': 0, **fields})
  return path, load_sweep_config(path), str(tmp_path / 'sweep')


def _open_study(config, config_path, workdir):
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  return cli.open_sweep(config, config_path, workdir, None)[1]


@pytest.mark.parametrize('stop', [None, signal.SIGTERM])
def test_a_stop_during_the_final_evaluation_completes_the_trial_and_starts_no_other(
    tmp_path, monkeypatch, stop
):
  """TrainResult.stop_requested (a SIGTERM after the last step) -> the trial is COMPLETE with
  its objective and the worker exits 128 + signal instead of starting the next grid point."""
  from experiments.core import loop  # pylint: disable=g-import-not-at-top
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  calls = []

  def fake_train(config, workdir, **kwargs):  # pylint: disable=unused-argument
    calls.append(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': 30, 'eval/accuracy': 0.25 * len(calls)}) + '\n')
    state = types.SimpleNamespace(params={'w': np.zeros((3, 4))})
    return loop.TrainResult(state, 30, workdir, {}, stop_requested=stop)

  monkeypatch.setattr(loop, 'train_and_evaluate', fake_train)
  config_path, config, workdir = _grid(tmp_path, "{'learning_rate': space.grid(1e-3, 3e-3)}")
  code = cli.run_worker(config, config_path, workdir, None)
  trials = load_trials(workdir)
  if stop is None:
    assert code == 0 and len(calls) == 2
    assert sorted(t.value for t in trials) == [0.25, 0.5]
  else:
    assert code == 128 + signal.SIGTERM and len(calls) == 1
    (trial,) = trials
    assert trial.state.name == 'COMPLETE' and trial.value == 0.25
    assert trial.user_attrs['num_params'] == 12


class _Killed(BaseException):
  """Stands for kill -9 of the worker process (nothing of it runs any more)."""


@pytest.mark.parametrize('sampler', ['tpe', 'random'])
def test_a_resumed_sweep_never_draws_a_point_again(tmp_path, monkeypatch, sampler):
  """Killed during its third trial, the same command again: 4 COMPLETE trials, 4 points (the
  sampler used to restart from the same seed, re-drawing trial 0's point)."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  def kill_third(workdir, kwargs):  # pylint: disable=unused-argument
    if len(calls) == 3:
      raise _Killed()  # (its pid is recorded dead below, as after a real kill -9)

  calls = fake_training(monkeypatch, before=kill_third)
  path = write_sweep(
      tmp_path, "{'learning_rate': space.log_float(1e-4, 1e-1)}", sampler=sampler, num_trials=4
  )
  workdir = str(tmp_path / 'sweep')
  with pytest.raises(_Killed):
    cli.run_worker(load_sweep_config(path), path, workdir, None)
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE', 'COMPLETE', 'RUNNING']
  child = subprocess.Popen(['true'])
  child.wait()  # reaped: its pid names no process
  from experiments.sweep import storage  # pylint: disable=g-import-not-at-top

  name = _open_study(load_sweep_config(path), path, workdir).study_name
  store = storage.open_storage(None, workdir)  # Optuna's public storage API: ids by number
  killed = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(name), 2)
  store.set_trial_user_attr(killed, 'pid', child.pid)
  assert cli.run_worker(load_sweep_config(path), path, workdir, None) == 0
  trials = load_trials(workdir)
  assert [t.state.name for t in trials] == ['COMPLETE'] * 4
  assert len({t.params['learning_rate'] for t in trials}) == 4
  assert calls[3] == calls[2]  # trial 2 resumed under its own number, not re-drawn


def test_two_workers_first_draws_differ(tmp_path):
  from experiments.sweep import worker  # pylint: disable=g-import-not-at-top

  path = write_sweep(tmp_path, "{'learning_rate': space.log_float(1e-4, 1e-1)}", sampler='tpe')
  config, workdir = load_sweep_config(path), str(tmp_path / 'sweep')
  points, fds = [], []
  for _ in range(2):  # two processes: each its own study object and sampler
    study = _open_study(config, path, workdir)
    w = worker.Worker(config, worker.space_lib.parse(config.space, config.base), study, workdir)
    trial, fd, resumed = w._next_trial()  # pylint: disable=protected-access
    assert not resumed
    points.append(trial.params['learning_rate'])
    fds.append(fd)
  for fd in fds:
    os.close(fd)
  assert points[0] != points[1]


def test_a_renamed_study_or_changed_pruner_is_the_sweep_config_differs_error(
    tmp_path, monkeypatch, capsys
):
  from experiments.sweep import cli, study  # pylint: disable=g-import-not-at-top

  fake_training(monkeypatch)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 0
  journal = open(os.path.join(workdir, 'journal.log'), 'rb').read()
  renamed = load_sweep_config(path)
  renamed.name = 'other'
  assert cli.run_worker(renamed, path, workdir, None) == 2
  err = capsys.readouterr().err
  assert 'the sweep config differs' in err
  assert f"study_name: '{study.study_name(config, path)}' -> 'other'" in err
  startup = load_sweep_config(path)
  startup.pruner_startup_trials = 7
  assert cli.run_worker(startup, path, workdir, None) == 2
  assert 'pruner_startup_trials: 3 -> 7' in capsys.readouterr().err
  assert open(os.path.join(workdir, 'journal.log'), 'rb').read() == journal
  assert json.load(open(os.path.join(workdir, 'sweep.json')))['study_name'] != 'other'


def test_a_sweep_dir_from_before_the_new_identity_fields_resumes(tmp_path, monkeypatch):
  from experiments.sweep import cli, study  # pylint: disable=g-import-not-at-top

  fake_training(monkeypatch)
  path, config, workdir = _grid(tmp_path, num_trials=1)
  assert cli.run_worker(config, path, workdir, None) == 0
  sweep_file = os.path.join(workdir, 'sweep.json')
  record = json.load(open(sweep_file))
  for field in ('study_name', 'pruner_startup_trials'):  # as the code before them wrote it
    del record['identity'][field]
  json.dump(record, open(sweep_file, 'w'))
  opened = _open_study(config, path, workdir)
  opened.set_user_attr(study.IDENTITY_ATTR, json.dumps(record['identity']))
  config.num_trials = 0
  assert cli.run_worker(config, path, workdir, None) == 0
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE'] * 3


@pytest.mark.parametrize(
    'error',
    [
        OSError(errno.ENOSPC, 'No space left on device'),
        MemoryError(),
        RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.00GiB'),
        'DatasetUnavailableError',
        'WorkdirLockedError',
    ],
)
def test_an_environment_failure_puts_the_trial_back_and_stops_the_worker(
    tmp_path, monkeypatch, capsys, error
):
  """Not FAIL (the grid would count the point as done): the trial stays RUNNING with its lock
  free, the worker exits 1 with one line; the same command then runs it."""
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top
  from experiments.classification import datasets  # pylint: disable=g-import-not-at-top
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  if error == 'DatasetUnavailableError':
    error = datasets.DatasetUnavailableError('no mnist in /data and no network')
  elif error == 'WorkdirLockedError':
    error = checkpointing.WorkdirLockedError('trials/1 is in use by another run (pid 7)')

  def fail_second(workdir, kwargs):  # pylint: disable=unused-argument
    if len(calls) == 2:
      raise error

  calls = fake_training(monkeypatch, before=fail_second)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'trial 1 could not run' in err and 'put back' in err
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE', 'RUNNING']
  assert cli.run_worker(config, path, workdir, None) == 0
  trials = load_trials(workdir)
  assert [t.state.name for t in trials] == ['COMPLETE'] * 3 and calls[2] == calls[1]
  assert len({t.params['learning_rate'] for t in trials}) == 3


def test_a_failure_of_the_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
  from experiments.core import loop  # pylint: disable=g-import-not-at-top
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  def nan_second(workdir, kwargs):  # pylint: disable=unused-argument
    if len(calls) == 2:
      raise loop.NonFiniteLossError('training loss is nan at step 3')

  calls = fake_training(monkeypatch, before=nan_second)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 0
  trials = load_trials(workdir)
  assert [t.state.name for t in trials] == ['COMPLETE', 'FAIL', 'COMPLETE']
  assert 'training loss is nan' in trials[1].user_attrs['fail_reason']


@pytest.mark.parametrize('when', ['at an evaluation', 'after training'])
def test_a_trial_another_worker_finished_is_given_up_quietly(tmp_path, monkeypatch, capsys, when):
  """Its heartbeat went stale, another worker took it over and finished it: the original
  worker gives it up (it used to die of UpdateFinishedTrialError) and goes on."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  path, config, workdir = _grid(tmp_path)

  def finished_elsewhere(tdir, kwargs):
    if len(calls) == 1:
      other = _open_study(load_sweep_config(path), path, workdir)
      (running,) = [t for t in other.get_trials() if t.state.name == 'RUNNING']
      other.tell(running.number, 0.125)
      if when == 'after training':
        kwargs.pop('on_evaluation')

  calls = fake_training(monkeypatch, before=finished_elsewhere)
  assert cli.run_worker(config, path, workdir, None) == 0
  out = capsys.readouterr()
  assert 'trial 0 was finished or taken over by another worker; gave it up' in out.out
  assert 'Traceback' not in out.err
  trials = load_trials(workdir)
  assert [t.state.name for t in trials] == ['COMPLETE'] * 3 and trials[0].value == 0.125


def test_a_running_trial_whose_lock_is_free_is_taken_over_at_once(tmp_path, monkeypatch):
  """The lock is the truth: a live pid of this host with a fresh heartbeat (a reused pid, a
  renamed container) or no claim at all (died between ask and claim) does not keep a trial
  whose lock is free; a trial whose lock is held is waited for, never left RUNNING."""
  from experiments.sweep import cli, claims, worker  # pylint: disable=g-import-not-at-top

  calls = fake_training(monkeypatch)
  path, config, workdir = _grid(tmp_path, "{'learning_rate': space.grid(1e-3, 2e-3, 3e-3, 4e-3)}")
  study = _open_study(config, path, workdir)
  reused = study.ask()
  for key, value in (('pid', os.getpid()), ('host', worker.socket.gethostname())):
    reused.set_user_attr(key, value)
  reused.set_user_attr('heartbeat', 1e12)  # fresh for ever
  study.ask()  # no claim
  held = study.ask()
  fd = claims.lock_trial(workdir, held.number)
  threading.Timer(1.0, os.close, (fd,)).start()  # its worker ends a second later
  monkeypatch.setattr(worker, 'POLL_S', 0.2)
  assert cli.run_worker(config, path, workdir, None) == 0
  trials = load_trials(workdir)
  assert [t.state.name for t in trials] == ['COMPLETE'] * 4
  assert sorted(calls[:3]) == [claims.trial_dir(workdir, n) for n in (0, 1, 3)]
  assert calls[3] == claims.trial_dir(workdir, 2)  # taken over once its lock was free


def test_a_signal_during_trial_set_up_trains_no_step(tmp_path, monkeypatch):
  from experiments.sweep import cli, variants  # pylint: disable=g-import-not-at-top

  calls = fake_training(monkeypatch)
  expand = variants.expand

  def expand_then_sigterm(*args):
    os.kill(os.getpid(), signal.SIGTERM)
    return expand(*args)

  monkeypatch.setattr(variants, 'expand', expand_then_sigterm)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 128 + signal.SIGTERM
  assert not calls and [t.state.name for t in load_trials(workdir)] == ['RUNNING']
  monkeypatch.setattr(variants, 'expand', expand)
  assert cli.run_worker(config, path, workdir, None) == 0
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE'] * 3


def test_sigusr1_lets_the_running_trial_finish_and_starts_no_other(tmp_path, monkeypatch):
  """SIGUSR1 during trial 0's training: the training is not told to stop, trial 0 is COMPLETE,
  no other grid point starts, exit 128 + SIGUSR1; the same command again runs the rest."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  told_to_stop = []

  def drain_during_first(workdir, kwargs):  # pylint: disable=unused-argument
    if len(calls) == 1:
      os.kill(os.getpid(), signal.SIGUSR1)
    told_to_stop.append(kwargs['stop_requested']())

  calls = fake_training(monkeypatch, before=drain_during_first)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 128 + signal.SIGUSR1
  assert len(calls) == 1 and told_to_stop == [None]
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE']
  assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is put back
  assert cli.run_worker(config, path, workdir, None) == 0
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE'] * 3 and len(calls) == 3


def test_a_trial_shows_its_progress_at_most_once_a_minute(tmp_path, monkeypatch, capsys):
  """Each evaluation with the objective may write '[worker] trial N: step S of T, OBJ=V'; two
  within PROGRESS_S write one line."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  def evaluate_early(tdir, kwargs):  # pylint: disable=unused-argument
    kwargs['on_evaluation'](5, {'eval/accuracy': 0.125, 'eval/loss': 2.0})
    kwargs['on_evaluation'](6, {'eval/loss': 1.9})  # no objective: no line, no report

  fake_training(monkeypatch, before=evaluate_early)
  path, config, workdir = _grid(tmp_path, "{'learning_rate': space.grid(1e-3)}")
  assert cli.run_worker(config, path, workdir, None) == 0
  out = capsys.readouterr().out
  steps = config.base.num_train_steps
  assert out.count('trial 0: step') == 1
  assert f'[worker] trial 0: step 5 of {steps:,}, eval/accuracy=0.125\n' in out
  (trial,) = load_trials(workdir)
  assert trial.intermediate_values == {5: 0.125, 10: 1 / 1.001}


def test_each_finished_trial_writes_where_the_whole_sweep_stands(tmp_path, monkeypatch, capsys):
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  fake_training(monkeypatch)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 0
  lines = [l for l in capsys.readouterr().out.splitlines() if '] sweep: ' in l]
  assert [l.split('] sweep: ')[1].split(';')[0] for l in lines] == [
      f'{k} of 3 runs finished' for k in (1, 2, 3)
  ]
  assert '; 2 left, about ' in lines[0] and 'left' not in lines[2]


def test_progress_line_counts_finished_runs_and_the_training_time_left():
  from experiments.sweep import study  # pylint: disable=g-import-not-at-top

  def trial(state, wall=None):
    attrs = {} if wall is None else {'wall_s': wall}
    value = 1.0 if state == optuna.trial.TrialState.COMPLETE else None
    return optuna.trial.create_trial(state=state, value=value, user_attrs=attrs)

  state = optuna.trial.TrialState
  trials = [trial(state.COMPLETE, 600.0), trial(state.PRUNED, 1800.0), trial(state.FAIL)]
  trials.append(trial(state.RUNNING, 5000.0))  # not finished: not counted
  # 3 of 6 finished; mean of the two with a time 1,200 s = 20 min; 3 left x 1,200 s = 1.0 h
  assert study.progress_line(trials, 6) == (
      'sweep: 3 of 6 runs finished; 3 left, about 1.0 h of training summed over runs at the '
      'mean of 2 finished (20.0 min)'
  )
  assert study.progress_line(trials[2:], 6) == 'sweep: 1 of 6 runs finished'  # no time known yet
  assert study.progress_line(trials[:3], 3) == 'sweep: 3 of 3 runs finished'


def test_sigusr1_between_two_stages_starts_no_further_stage(tmp_path, monkeypatch):
  """SIGUSR1 while `run.py sweep` is between a tuned ablation's stages (no worker running): the
  process lives on and the next stage returns 128 + SIGUSR1 without opening its sweep dir."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  calls = fake_training(monkeypatch)
  path, config, workdir = _grid(tmp_path)
  with cli.no_stage_after_sigusr1():
    os.kill(os.getpid(), signal.SIGUSR1)
    assert cli.run_sweep(config, path, workdir, None) == 128 + signal.SIGUSR1
  assert not calls and not os.path.exists(workdir)
  assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_no_readable_checkpoint_restarts_the_trial_from_step_0(tmp_path, monkeypatch, capsys):
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  def unreadable_once(tdir, kwargs):  # pylint: disable=unused-argument
    if len(calls) == 1:
      os.makedirs(os.path.join(tdir, 'checkpoints', '10'))
      raise checkpointing.UnreadableCheckpointError('no readable checkpoint in x:\n  step 10: E')

  calls = fake_training(monkeypatch, before=unreadable_once)
  path, config, workdir = _grid(tmp_path, "{'learning_rate': space.grid(1e-3)}")
  assert cli.run_worker(config, path, workdir, None) == 0
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE'] and len(calls) == 2
  tdir = os.path.join(workdir, 'trials', '0')
  assert 'restarted the trial from step 0' in capsys.readouterr().out
  assert not os.path.exists(os.path.join(tdir, 'checkpoints'))
  (aside,) = [n for n in os.listdir(tdir) if n.startswith('checkpoints.unreadable')]
  assert os.listdir(os.path.join(tdir, aside)) == ['10']


def test_an_environment_failure_between_trials_is_one_line(tmp_path, monkeypatch, capsys):
  """The storage going away outside a trial (here: while choosing the next one)."""
  from experiments.sweep import cli, worker  # pylint: disable=g-import-not-at-top

  class OperationalError(Exception):  # as sqlalchemy.exc.OperationalError is named
    pass

  def lost(self):
    raise OperationalError('server closed the connection unexpectedly')

  fake_training(monkeypatch)
  monkeypatch.setattr(worker.Worker, '_next_trial', lost)
  path, config, workdir = _grid(tmp_path)
  assert cli.run_worker(config, path, workdir, None) == 1
  err = capsys.readouterr().err
  assert (
      err == 'run.py: error: worker: OperationalError: server closed the connection unexpectedly\n'
  )


def test_a_sweep_with_a_running_trial_is_not_reported_complete(tmp_path, capsys):
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  path, config, workdir = _grid(tmp_path, "{'learning_rate': space.grid(1e-3, 2e-3)}")
  study = _open_study(config, path, workdir)
  study.tell(study.ask(), 0.5)
  assert cli.sweep_status(study, 1, 0) == 0
  assert '[sweep] complete: 1 of 1 runs finished' in capsys.readouterr().out
  study.ask()  # RUNNING (its worker elsewhere)
  assert cli.sweep_status(study, 2, 0) == 1
  out = capsys.readouterr()
  assert '[sweep] not complete: 1 of 2 runs finished; RUNNING: 1' in out.out
  assert 'trial(s) 1 still RUNNING' in out.err and '[sweep] complete' not in out.out
  assert cli.sweep_status(study, 2, 143) == 143
