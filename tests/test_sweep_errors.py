"""Bad input and a broken sweep dir: one line naming the problem, a non-zero exit, no traceback,
nothing written; limits checked before anything runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, cli_env
from sweep_helpers import fake_training, load_sweep_config, write_sweep

GRID = {'sampler': 'grid', 'num_trials': 0}


def _one_line_error(result, code: int, *texts: str) -> None:
  assert result.returncode == code, (result.stdout[-2000:], result.stderr[-2000:])
  assert (
      result.stderr.startswith('run.py: error: ') and result.stderr.count('\n') == 1
  ), result.stderr
  for text in texts:
    assert text in result.stderr, result.stderr


@pytest.fixture(scope='module')
def finished_sweep(tmp_path_factory):
  """(config path, a finished 2-point grid sweep dir) made in-process with fake training."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  tmp = tmp_path_factory.mktemp('finished')
  path = write_sweep(tmp, "{'learning_rate': space.grid(1e-3, 2e-3)}", **GRID)
  with pytest.MonkeyPatch.context() as m:
    fake_training(m)
    assert cli.run_worker(load_sweep_config(path), path, str(tmp / 'sweep'), None) == 0
  return path, str(tmp / 'sweep')


def test_bad_workdirs_and_a_corrupt_sweep_json(run_py, finished_sweep, tmp_path):
  path, finished = finished_sweep
  (tmp_path / 'file').write_text('')
  result = run_py('sweep', '--config', path, '--workdir', str(tmp_path / 'file' / 'sub'))
  _one_line_error(result, 1, f'--workdir {tmp_path}/file/sub: Not a directory')
  broken = tmp_path / 'broken'
  shutil.copytree(finished, broken)
  (broken / 'sweep.json').write_text('{"study_name": "x", "ide')
  journal = (broken / 'journal.log').read_bytes()
  result = run_py('sweep', '--config', path, '--workdir', str(broken))
  _one_line_error(result, 2, f'{broken}/sweep.json is corrupt')
  result = run_py('report', '--workdir', str(broken))
  _one_line_error(result, 1, f'{broken}/sweep.json is corrupt')
  assert (broken / 'journal.log').read_bytes() == journal
  assert (broken / 'sweep.json').read_text() == '{"study_name": "x", "ide'


def _chmod_tree(top, dir_mode: int, file_mode: int) -> None:
  for root, dirs, names in os.walk(top):
    os.chmod(root, dir_mode)
    for name in names:
      os.chmod(os.path.join(root, name), file_mode)
    for d in dirs:
      os.chmod(os.path.join(root, d), dir_mode)


def test_a_read_only_sweep_dir(finished_sweep, tmp_path):
  """As a process that may not write there (root without its file-permission capabilities,
  which is what an ordinary user is)."""
  path, finished = finished_sweep
  readonly = tmp_path / 'readonly'
  shutil.copytree(finished, readonly)
  before = {p: os.path.getmtime(os.path.join(readonly, p)) for p in os.listdir(readonly)}
  _chmod_tree(readonly, 0o555, 0o444)
  prefix = []
  if os.geteuid() == 0:
    if not shutil.which('setpriv'):
      pytest.skip('running as root without setpriv to drop the file-permission capabilities')
    prefix = ['setpriv', '--bounding-set=-dac_override,-dac_read_search']
  try:
    for verb, args in (('sweep', ('--config', path)), ('report', ())):
      result = subprocess.run(
          [*prefix, sys.executable, os.path.join(REPO_ROOT, 'run.py'), verb, *args,
           '--workdir', str(readonly)],
          cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=600, check=False,
      )  # fmt: skip
      _one_line_error(result, 1, 'Permission denied')
  finally:
    _chmod_tree(readonly, 0o755, 0o644)
  assert {p: os.path.getmtime(os.path.join(readonly, p)) for p in os.listdir(readonly)} == before


def test_invalid_pruner_values_name_the_field(run_py, finished_sweep, tmp_path):
  path, _ = finished_sweep
  for field in ('pruner_warmup_steps', 'pruner_startup_trials'):
    result = run_py(
        'sweep', '--config', path, '--workdir', str(tmp_path / 's'), f'--config.{field}=-1',
        '--config.pruner=median',
    )  # fmt: skip
    _one_line_error(result, 2, f'config.{field}: must be an integer >= 0, got -1')
    assert 'storage' not in result.stderr
  assert not os.path.exists(tmp_path / 's')


def test_more_workers_than_cores_is_refused_unless_oversubscribed(run_py, finished_sweep):
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  path, finished = finished_sweep
  result = run_py('sweep', '--config', path, '--workdir', finished, '--workers', '999')
  _one_line_error(result, 2, '--workers 999 is more than the', '--oversubscribe')
  cli.check_workers(4, 2, 0, oversubscribe=True)
  cli.check_workers(2, 2, 0, oversubscribe=False)
  with pytest.raises(cli.WorkersError, match='--workers 3 is more than the 2 GPUs'):
    cli.check_workers(3, 16, 2, oversubscribe=False)


def test_a_grid_over_the_limit_is_refused_before_it_is_listed(load_config):
  from experiments.sweep import space, spec  # pylint: disable=g-import-not-at-top

  config = spec.sweep_config(base=load_config('digits'))
  config.sampler, config.num_trials = 'grid', 0
  config.space = space.build({'num_train_steps': space.int_range(1, 10**9)})
  with pytest.raises(spec.SweepConfigError, match=r'the grid has 1,000,000,000 points'):
    spec.validate(config, 1)
  config.space = space.build({'num_train_steps': space.int_range(1, 50_000)})
  config.seeds = 3
  with pytest.raises(spec.SweepConfigError, match=r'150,000 points \(x seeds\), more than 100,000'):
    spec.validate(config, 1)
  config.seeds = 2
  assert spec.total_runs(config, spec.validate(config, 1)) == 100_000
