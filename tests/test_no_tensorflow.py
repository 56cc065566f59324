"""No TensorFlow at run time: `run.py` subprocesses of the suite run with TensorFlow hidden
(tests/conftest.py:cli_env); here the hiding itself, prepared MNIST and Multi30k runs, the
one-line error for unprepared data, `run.py prepare` and `run.py doctor`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env
from experiments import doctor
from experiments.text import synthetic_corpus

DATA = os.environ.get('TRANSFORMER_DATA_DIR', '')
TINY_TRANSLATION = [
    '--config.num_train_steps=4',
    '--config.eval_every_steps=4',
    '--config.checkpoint_every_steps=4',
    '--config.log_every_steps=2',
    '--config.warmup_steps=1',
    '--config.final_test_splits=test_2016',
    '--config.data.verify_checksums=False',
    '--config.data.vocab_size=64',
    '--config.data.tokens_per_batch=256',
    '--config.data.length_multiple=8',
    '--config.data.max_train_len=32',
    '--config.model.d_model=16',
    '--config.model.num_heads=2',
    '--config.model.num_encoder_layers=1',
    '--config.model.num_decoder_layers=1',
    '--config.model.d_ff=32',
    '--config.model.max_len=32',
    '--config.decoding.beam_size=1',
]


def _history(workdir) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_the_suite_hides_tensorflow_from_its_subprocesses():
  code = (
      'import importlib.util, sys\n'
      'assert importlib.util.find_spec("tensorflow") is None\n'
      'try:\n  import tensorflow\nexcept ModuleNotFoundError:\n  sys.exit(3)\n'
  )
  hidden = subprocess.run([sys.executable, '-c', code], env=cli_env(), check=False)
  assert hidden.returncode == 3
  if importlib.util.find_spec('tensorflow') is not None:  # CI installs the [prepare] extra
    shown = subprocess.run(
        [sys.executable, '-c', 'import tensorflow'], env=cli_env(allow_tensorflow=True), check=False
    )
    assert shown.returncode == 0


def test_multi30k_prepares_and_trains_without_tensorflow(run_py, tmp_path):
  synthetic_corpus.write_corpus(str(tmp_path / 'data' / 'multi30k'))
  data = [
      f'--config.data.data_dir={tmp_path / "data"}',
      f'--config.data.tfds_data_dir={tmp_path}/tfds',
  ]
  config = ['--config', 'configs/translation_multi30k.py', *TINY_TRANSLATION, *data]
  prepared = run_py('prepare', *config)
  assert prepared.returncode == 0, prepared.stderr
  assert 'multi30k en->de tok: prepared (ArrayRecord)' in prepared.stdout
  assert 'multi30k en->de raw: prepared (ArrayRecord)' in prepared.stdout
  out = run_py('train', *config, '--workdir', str(tmp_path / 'run'))
  assert out.returncode == 0, out.stderr[-2000:]
  final = _history(tmp_path / 'run')[-1]
  assert final['step'] == 4 and 'test_2016/bleu' in final


def test_prepare_of_a_dataset_with_nothing_to_prepare(run_py):
  out = run_py('prepare', '--config', 'configs/digits.py')
  assert out.returncode == 0 and 'nothing to prepare' in out.stdout


MNIST_TINY = [
    '--config',
    'configs/mnist.py',
    '--config.num_train_steps=4',
    '--config.eval_every_steps=4',
    '--config.checkpoint_every_steps=4',
    '--config.log_every_steps=2',
    '--config.warmup_steps=1',
    '--config.batch_size=16',
    '--config.eval_batch_size=1000',
    '--config.model.d_model=16',
    '--config.model.num_heads=2',
    '--config.model.num_layers=1',
    '--config.model.d_ff=32',
]


@pytest.mark.skipif(not DATA, reason='needs $TRANSFORMER_DATA_DIR/mnist (the official MNIST files)')
@pytest.mark.skipif(
    importlib.util.find_spec('tensorflow') is None,
    reason="preparing TFDS's MNIST needs TensorFlow (pip install -e '.[prepare]')",
)
def test_mnist_prepared_once_then_trained_without_tensorflow(run_py, tmp_path):
  tfds_dir = f'--config.data.tfds_data_dir={tmp_path / "tfds"}'
  unprepared = run_py('train', *MNIST_TINY, tfds_dir, '--workdir', str(tmp_path / 'a'))
  assert unprepared.returncode == 1
  message = [l for l in unprepared.stderr.splitlines() if l.startswith('run.py: error:')]
  assert len(message) == 1 and 'Traceback' not in unprepared.stderr, unprepared.stderr
  assert 'TensorFlow' in message[0] and 'run.py prepare --config' in message[0]
  checkpoints = tmp_path / 'a' / 'checkpoints'
  assert not checkpoints.exists() or not [p for p in os.listdir(checkpoints) if p.isdigit()]

  prepared = run_py('prepare', *MNIST_TINY, tfds_dir, allow_tensorflow=True)
  assert prepared.returncode == 0, prepared.stderr[-2000:]
  assert 'mnist: prepared (ArrayRecord)' in prepared.stdout
  out = run_py('train', *MNIST_TINY, tfds_dir, '--workdir', str(tmp_path / 'b'))
  assert out.returncode == 0, out.stderr[-2000:]
  final = _history(tmp_path / 'b')[-1]
  assert final['step'] == 4 and 0.0 <= final['test/accuracy'] <= 1.0


def test_doctor_passes_without_tensorflow(run_py):
  out = run_py('doctor', timeout=900)
  assert out.returncode == 0, out.stdout + out.stderr[-2000:]
  rows = {line.split()[0] + ' ' + line.split()[1]: line for line in out.stdout.splitlines()[1:-1]}
  for check in ('train classifier', 'train translator', 'train LM', 'no TensorFlow'):
    assert ' PASS ' in rows[check], rows
  assert 'steps/s, MFU' in rows['train translator']
  assert out.stdout.splitlines()[-1].startswith('13 of 13 rows fine, 0 failed')


def test_doctor_exits_1_on_a_failed_row_and_names_it(monkeypatch, capsys):
  def checks(emit):
    rows = [doctor.Row('backend', None, 'cpu'), doctor.Row('attention chunked', False, 'off')]
    for row in rows:
      emit(row)
    return rows

  from absl import logging  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(doctor, 'run_checks', checks)
  before = logging.get_verbosity()
  assert doctor.main() == 1
  assert '1 of 2 rows fine, 1 failed (attention chunked)' in capsys.readouterr().out
  assert logging.get_verbosity() == before  # quiet only while it runs: callers keep INFO


def test_a_check_that_raises_is_a_failed_row(monkeypatch):
  def broken():
    raise RuntimeError('no devices\nsecond line')

  monkeypatch.setattr(doctor, 'environment_rows', broken)
  monkeypatch.setattr(doctor, 'RUNS', {})  # no training runs: the rest is quick
  rows = []
  doctor.run_checks(rows.append)
  assert [r for r in rows if r.ok is False][0] == doctor.Row(
      'environment', False, 'RuntimeError: no devices'
  )


def test_doctor_mesh_row_compares_all_devices_with_one(tmp_path):
  """The mesh row on 4 (forced host) devices: data-parallel loss = one-device loss."""
  code = (
      'from experiments import doctor\n'
      f'row = doctor.mesh_row(doctor.tiny_config("classifier", "unused"), {str(tmp_path)!r})\n'
      'print(row.ok, row.detail)\n'
  )
  env = cli_env(XLA_FLAGS='--xla_force_host_platform_device_count=4')
  out = subprocess.run(
      [sys.executable, '-c', code], env=env, capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith('True data-parallel over 4 devices: loss'), out.stdout
