"""`run.py sweep` / `run.py report` end to end on tiny digits sweeps (journal-file storage)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time

import pytest

from sweep_helpers import evaluations, load_trials, write_sweep

GRID_SPACE = "{'learning_rate': space.grid(1e-3, 3e-3)}"
GRID = {'sampler': 'grid', 'num_trials': 0}
LONGER = {'num_train_steps': 40}  # 4 checkpoints per trial: room for a kill in the middle


def _sweep(run_py, config: str, workdir, *flags, **kw):
  return run_py('sweep', '--config', config, '--workdir', str(workdir), *flags, **kw)


def _points(trials) -> dict[float, tuple[str, float | None]]:
  return {t.params['learning_rate']: (t.state.name, t.value) for t in trials}


@pytest.fixture(scope='module')
def grid_sweep(run_py, tmp_path_factory):
  """An uninterrupted 2-point grid sweep: (config path, sweep dir, CompletedProcess)."""
  tmp = tmp_path_factory.mktemp('grid')
  config = write_sweep(tmp, GRID_SPACE, base=LONGER, **GRID)
  result = _sweep(run_py, config, tmp / 'sweep')
  assert result.returncode == 0, result.stderr[-3000:]
  return config, str(tmp / 'sweep'), result


def test_grid_sweep_runs_every_point_once(grid_sweep):
  _, workdir, result = grid_sweep
  trials = load_trials(workdir)
  assert sorted(t.params['learning_rate'] for t in trials) == [1e-3, 3e-3]
  assert all(t.state.name == 'COMPLETE' for t in trials)
  for t in trials:  # each trial is an ordinary run in DIR/trials/<number>
    tdir = os.path.join(workdir, 'trials', str(t.number))
    assert os.path.exists(os.path.join(tdir, 'config.json'))
    assert t.value == max(v for _, v in evaluations(tdir))
  assert 'report:' in result.stdout


def test_report_contents(grid_sweep, run_py):
  _, workdir, _ = grid_sweep
  result = run_py('report', '--workdir', workdir)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  trials = load_trials(workdir)
  best = max(trials, key=lambda t: t.value)
  assert f'**Best trial: {best.number}**' in report
  for t in trials:
    row = next(line for line in report.splitlines() if line.startswith(f'| {t.number} | COMPLETE'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    # number, state, learning_rate, seed, objective, best step, steps, wall, steps/s, params
    assert float(cells[2]) == t.params['learning_rate'] and cells[3] == '0'
    assert float(cells[4]) == pytest.approx(t.value, abs=1e-4)
    assert cells[6] == '40' and int(cells[9]) == t.user_attrs['num_params'] > 0
  for name in ('objective_vs_learning_rate', 'learning_curves', 'optimization_history'):
    assert os.path.getsize(os.path.join(workdir, 'plots', f'{name}.png')) > 0
    assert name in result.stdout


def _wait_for_checkpoint(tdir: str, proc: subprocess.Popen, timeout: float = 600) -> None:
  ckpt = os.path.join(tdir, 'checkpoints')
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt)):
      return
    assert proc.poll() is None, 'the sweep ended before it could be interrupted'
    time.sleep(0.02)
  raise AssertionError(f'no checkpoint in {tdir}')


def test_sigterm_checkpoints_and_the_same_command_resumes(
    grid_sweep, run_py, popen_run_py, tmp_path
):
  """(kill -9: test_ten_random_kill9s_end_in_the_uninterrupted_sweep)"""
  config, reference, _ = grid_sweep
  workdir = tmp_path / 'sweep'
  args = ('sweep', '--config', config, '--workdir', str(workdir))
  # SIGTERM in the middle of trial 0: it is checkpointed and stays RUNNING (exit 128 + 15).
  proc = popen_run_py(*args, log_path=str(tmp_path / 'a.log'))
  _wait_for_checkpoint(str(workdir / 'trials' / '0'), proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=600) == 128 + signal.SIGTERM
  assert [t.state.name for t in load_trials(str(workdir))] == ['RUNNING']
  result = run_py(*args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'trial 0 resumed from its checkpoint' in result.stdout
  _assert_same_sweep(str(workdir), reference)


def _assert_same_sweep(workdir: str, reference: str) -> None:
  """Same trials, same objectives, same evaluation history as the uninterrupted sweep."""
  trials, expected = load_trials(workdir), load_trials(reference)
  assert len(trials) == len(expected) and _points(trials) == _points(expected)
  assert not [t for t in trials if t.state.name == 'RUNNING']
  by_lr = {t.params['learning_rate']: t.number for t in expected}
  for t in trials:
    ref_dir = os.path.join(reference, 'trials', str(by_lr[t.params['learning_rate']]))
    assert evaluations(os.path.join(workdir, 'trials', str(t.number))) == evaluations(ref_dir)


def test_a_changed_sweep_config_is_an_error_and_changes_nothing(grid_sweep, run_py):
  config, workdir, _ = grid_sweep
  journal = os.path.join(workdir, 'journal.log')
  before = open(journal, 'rb').read()
  result = _sweep(run_py, config, workdir, '--config.base.num_train_steps=50')
  assert result.returncode == 2
  assert 'changed fields' in result.stderr and 'base.num_train_steps: 40 -> 50' in result.stderr
  assert open(journal, 'rb').read() == before


def test_pruning_stops_a_bad_trial_at_its_first_evaluation(run_py, tmp_path):
  # Grid order for sampler_seed 5: 3e-3, then 2e-7, which learns nothing.
  config = write_sweep(
      tmp_path,
      "{'learning_rate': space.grid(3e-3, 1e-7, 2e-7)}",
      sampler='grid',
      num_trials=2,
      sampler_seed=5,
      pruner='median',
      pruner_startup_trials=1,
  )
  result = _sweep(run_py, config, tmp_path / 'sweep')
  assert result.returncode == 0, result.stderr[-3000:]
  trials = load_trials(str(tmp_path / 'sweep'))
  assert [(t.params['learning_rate'], t.state.name) for t in trials] == [
      (3e-3, 'COMPLETE'),
      (2e-7, 'PRUNED'),
  ]
  assert trials[1].user_attrs['pruned_at_step'] == 10 and trials[1].user_attrs['steps'] == 10
  report = open(tmp_path / 'sweep' / 'report.md').read()
  assert '| 1 | PRUNED |' in report and 'pruned at step 10 (objective there' in report


def test_bad_points_and_crashes_are_recorded_and_the_sweep_goes_on(run_py, tmp_path):
  config = write_sweep(
      tmp_path,
      "{'model.num_heads': space.grid(2, 3), 'learning_rate': space.grid(3e-3, 1e30)}",
      **GRID,
  )
  result = _sweep(run_py, config, tmp_path / 'sweep')
  assert result.returncode == 0, result.stderr[-3000:]
  states = {
      (t.params['model.num_heads'], t.params['learning_rate']): (
          t.state.name,
          t.user_attrs.get('fail_reason', ''),
      )
      for t in load_trials(str(tmp_path / 'sweep'))
  }
  assert states[(2, 3e-3)] == ('COMPLETE', '')
  for lr in (3e-3, 1e30):  # the experiment's own validation rejects 3 heads of width 16
    assert states[(3, lr)][0] == 'FAIL' and 'config.model.num_heads' in states[(3, lr)][1]
  assert states[(2, 1e30)][0] == 'FAIL' and 'training loss is nan' in states[(2, 1e30)][1]


def test_tpe_with_repeated_seeds_and_two_workers(run_py, tmp_path):
  config = write_sweep(
      tmp_path,
      "{'learning_rate': space.log_float(1e-3, 1e-2)}",
      sampler='tpe',
      num_trials=2,
      seeds=2,
  )
  # --oversubscribe: two workers also where pytest runs on one core (taskset -c 0)
  result = _sweep(run_py, config, tmp_path / 'sweep', '--workers', '2', '--oversubscribe')
  assert result.returncode == 0, result.stderr[-3000:]
  assert '[worker 0]' in result.stdout and '[worker 1]' in result.stdout
  trials = load_trials(str(tmp_path / 'sweep'))
  assert len(trials) == 4 and all(t.state.name == 'COMPLETE' for t in trials)
  seeds_per_point: dict[float, list[int]] = {}
  for t in trials:
    seeds_per_point.setdefault(t.params['learning_rate'], []).append(t.user_attrs['seed'])
  assert sorted(map(sorted, seeds_per_point.values())) == [[0, 1], [0, 1]]
  assert len({t.user_attrs['pid'] for t in trials}) == 2  # both workers ran trials
  report = open(tmp_path / 'sweep' / 'report.md').read()
  assert 'Mean +- std of eval/accuracy over seeds' in report


def test_bad_space_is_an_error_before_any_trial(run_py, tmp_path):
  config = write_sweep(tmp_path, "{'model.heads': space.grid(1, 2)}", **GRID)
  result = _sweep(run_py, config, tmp_path / 'sweep')
  assert result.returncode == 2
  assert "config.space.model.heads: no field 'heads' in model" in result.stderr
  assert not os.path.exists(tmp_path / 'sweep' / 'trials')


def test_unreachable_storage_masks_the_password(run_py, tmp_path):
  config = write_sweep(tmp_path, GRID_SPACE, **GRID)
  url = 'postgresql://sweeper:hunter2secret@127.0.0.1:1/sweeps'
  result = _sweep(run_py, config, tmp_path / 'sweep', '--storage', url, timeout=300)
  assert result.returncode == 1
  assert (
      'cannot open the sweep storage postgresql://sweeper:***@127.0.0.1:1/sweeps' in result.stderr
  )
  assert 'hunter2secret' not in result.stdout + result.stderr


def test_corrupt_journal_is_an_error_and_is_left_alone(grid_sweep, run_py, tmp_path):
  config, workdir, _ = grid_sweep
  lines = open(os.path.join(workdir, 'journal.log')).read().splitlines(keepends=True)
  broken = ''.join(lines[:2] + ['{"op_code": 4, "worker_id": \n'] + lines[2:])
  os.makedirs(tmp_path / 'sweep')
  (tmp_path / 'sweep' / 'journal.log').write_text(broken)
  result = _sweep(run_py, config, tmp_path / 'sweep')
  assert result.returncode == 1
  assert 'journal.log is corrupt' in result.stderr and 'Traceback' not in result.stderr
  assert (tmp_path / 'sweep' / 'journal.log').read_text() == broken


def test_locked_journal_is_an_error(run_py, tmp_path):
  config = write_sweep(tmp_path, GRID_SPACE, **GRID)
  os.makedirs(tmp_path / 'sweep')
  with open(tmp_path / 'sweep' / 'journal.log.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a stuck process would
    result = _sweep(run_py, config, tmp_path / 'sweep', env={'TRANSFORMER_SWEEP_LOCK_TIMEOUT': '2'})
  assert result.returncode == 1
  assert 'journal lock' in result.stderr and 'held by another process' in result.stderr


def test_help_names_the_commands(run_py):
  result = run_py('sweep', '--help')
  assert result.returncode == 0
  for text in ('--workers', '--storage', 'DIR/trials/<number>', 'PGPASSWORD', 'RESUMES'):
    assert text in result.stdout
  result = run_py('report', '--help')
  assert result.returncode == 0 and 'report.md' in result.stdout


def test_a_killed_worker_s_trial_is_resumed_by_the_other_worker(run_py, popen_run_py, tmp_path):
  import optuna  # pylint: disable=g-import-not-at-top

  config = write_sweep(tmp_path, "{'learning_rate': space.grid(1e-3, 2e-3, 3e-3)}", **GRID)
  workdir = tmp_path / 'sweep'
  proc = popen_run_py(
      'sweep', '--config', config, '--workdir', str(workdir), '--workers', '2', '--oversubscribe',
      log_path=str(tmp_path / 'log'),
  )  # fmt: skip
  deadline = time.time() + 600
  running = []
  while not running and time.time() < deadline:  # a trial that has a checkpoint
    time.sleep(0.05)
    if os.path.exists(workdir / 'sweep.json'):
      running = [
          t
          for t in load_trials(str(workdir))
          if t.state == optuna.trial.TrialState.RUNNING
          and os.path.isdir(workdir / 'trials' / str(t.number) / 'checkpoints')
          and any(
              n.isdigit() for n in os.listdir(workdir / 'trials' / str(t.number) / 'checkpoints')
          )
      ]
  assert running, 'no trial reached a checkpoint'
  victim = running[0]
  os.kill(victim.user_attrs['pid'], signal.SIGKILL)
  assert proc.wait(timeout=900) == 128 + signal.SIGKILL  # the launcher reports the lost worker
  log = (tmp_path / 'log').read_text()
  assert f'trial {victim.number} resumed from its checkpoint' in log
  trials = load_trials(str(workdir))
  assert len(trials) == 3 and all(t.state.name == 'COMPLETE' for t in trials)


KILL_TEST_SEED = 1919  # fixed: the same kill moments on every run (printed by the test)


def _kill_session(sid: int) -> None:
  """kill -9 of every process of session `sid` (the launcher and its workers, which leave its
  process group but not its session), until none is left."""
  while True:
    pids = []
    for name in os.listdir('/proc'):
      try:
        with open(f'/proc/{name}/stat') as f:
          fields = f.read().rsplit(')', 1)[1].split()
      except (OSError, IndexError):
        continue
      if int(fields[3]) == sid and fields[0] != 'Z':  # (zombies: waiting to be reaped)
        pids.append(int(name))
    if not pids:
      return
    for pid in pids:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    time.sleep(0.05)


def test_ten_random_kill9s_end_in_the_uninterrupted_sweep(grid_sweep, tmp_path):
  """kill -9 of a 2-worker sweep (all its processes) at 10 random moments, each followed by
  the same command: the same trials, points and metrics as the uninterrupted sweep, and no
  trial RUNNING. A moment is a random time into the start-up, or a random delay after the next
  checkpoint (so that kills land in start-up, training, evaluation, checkpointing and between
  trials, whatever the machine's speed)."""
  import random  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  from conftest import REPO_ROOT, cli_env  # pylint: disable=g-import-not-at-top

  config, reference, _ = grid_sweep
  print(f'kill test seed {KILL_TEST_SEED}')
  rng = random.Random(KILL_TEST_SEED)
  workdir = tmp_path / 'sweep'
  command = [sys.executable, os.path.join(REPO_ROOT, 'run.py'), 'sweep', '--config', config,
             '--workdir', str(workdir), '--workers', '2', '--oversubscribe']  # fmt: skip
  for i in range(10):
    in_start_up = rng.random() < 0.3  # else: just after the next checkpoint (tiny trials train
    seconds = rng.uniform(0.5, 5.0) if in_start_up else rng.uniform(0.0, 0.15)  # 40 steps in ~1 s)
    before, started, checkpointed = _progress(workdir), time.monotonic(), None
    with open(tmp_path / f'{i}.log', 'w') as log:
      proc = subprocess.Popen(
          command, cwd=REPO_ROOT, env=cli_env(), stdout=log, stderr=subprocess.STDOUT,
          start_new_session=True,
      )  # fmt: skip
      while proc.poll() is None:
        now = time.monotonic()
        if checkpointed is None and _progress(workdir) > before:
          checkpointed = now
        since = started if in_start_up else checkpointed
        if since is not None and now - since >= seconds:
          break
        time.sleep(0.02)
      ended = proc.poll() is not None
      _kill_session(proc.pid)
      proc.wait()
    shown = [
        f'{t.number} {t.state.name} step {_latest(workdir, t.number)}'
        for t in _safe_trials(workdir)
    ]
    plan = 'into the start-up' if in_start_up else 'after a checkpoint'
    print(f'kill {i}: {seconds:.2f} s {plan}' + (' (had ended)' if ended else '') + f': {shown}')
  result = subprocess.run(
      command, cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=900,
      check=False,
  )  # fmt: skip
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert '[sweep] complete: 2 of 2 runs finished' in result.stdout
  _assert_same_sweep(str(workdir), reference)


def _progress(workdir) -> int:
  """Training steps checkpointed so far, over all trials."""
  trials = workdir / 'trials'
  numbers = [int(n) for n in os.listdir(trials) if n.isdigit()] if trials.is_dir() else []
  return sum(_latest(workdir, n) for n in numbers)


def _safe_trials(workdir):
  """The trials so far (none before the sweep dir has its journal)."""
  try:
    return load_trials(str(workdir))
  except (OSError, KeyError, ValueError):
    return []


def _latest(workdir, number: int) -> int:
  ckpt = workdir / 'trials' / str(number) / 'checkpoints'
  return max((int(n) for n in os.listdir(ckpt) if n.isdigit()), default=0) if ckpt.is_dir() else 0
