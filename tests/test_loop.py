"""experiments/core/loop.py: workdir layout, exact resume (kill -9, SIGTERM), NaN stop,
refusing a checkpoint of another config."""

import json
import os
import signal
import time
import types

import jax
import ml_collections
import numpy as np
import pytest

from experiments.core import checkpointing, configuration, loop, metric_logging, run_identity
from experiments.classification.task import ClassificationTask
from experiments.core.task import ConfigError
from test_metric_logging import tensorboard_scalars

# Long enough that a signal lands mid-run; a checkpoint every 50 steps.
RESUME = {
    'num_train_steps': 300,
    'checkpoint_every_steps': 50,
    'eval_every_steps': 150,
    'log_every_steps': 50,
    'keep_checkpoints': 10,
}


def _final_state(workdir):
  restored = loop.restore_for_inference(workdir, 'latest')
  return restored.step, jax.tree.leaves(restored.state)


def _wait_for(path, proc, timeout=1200):
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert proc.poll() is None, f'run ended (rc {proc.returncode}) before {path} appeared'
    assert time.time() < deadline, f'timed out waiting for {path}'
    time.sleep(0.02)


def test_workdir_layout(trained_workdir):
  workdir, result = trained_workdir
  assert sorted(os.listdir(workdir)) == [
      '.lock',
      'checkpoints',
      'config.json',
      'metrics.jsonl',
      'plots',
      'tensorboard',
  ]
  assert any(
      f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tensorboard'))
  )
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == [
      'cls_attention.png',
      'learning_curves.png',
  ]
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['num_train_steps'] == 30 and config['model']['d_model'] == 16
  history = metric_logging.read_history(workdir)
  steps = [h['step'] for h in history if 'train/loss' in h]
  assert steps == [10, 20, 30]
  assert all(
      'eval/accuracy' in h for h in history if h['step'] in (10, 20, 30) and 'train/loss' in h
  )
  final = [h for h in history if 'test/accuracy' in h and 'checkpoint' not in h]
  assert len(final) == 1 and final[0]['step'] == 30
  assert result.final_metrics == {k: v for k, v in final[0].items() if k.startswith('test/')}
  assert 'Finished training at step 30' in result.summary and 'classify' in result.summary


def test_sigterm_after_the_last_step_completes_the_run_and_reports_the_request(
    trained_workdir, tiny_digits_config, tmp_path, monkeypatch
):
  """A signal during the final evaluation/plots: the run still completes (exit 0 for
  run.py train), and the result says a stop was requested, so that a sweep worker starts no
  further trial (experiments/sweep/worker.py)."""
  workdir, _ = trained_workdir
  copy = str(tmp_path / 'copy')
  os.system(f'cp -r {workdir} {copy}')
  plot = loop.curves.plot_learning_curves

  def plot_then_signal(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop's stop_signals.StopSignals
    return plot(*args, **kwargs)

  monkeypatch.setattr(loop.curves, 'plot_learning_curves', plot_then_signal)
  result = loop.train_and_evaluate(tiny_digits_config(), copy)
  assert result.step == 30 and result.interrupted is None and result.final_metrics
  assert result.stop_requested == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_rerunning_a_finished_run_changes_nothing(trained_workdir, tiny_digits_config, tmp_path):
  workdir, _ = trained_workdir
  copy = str(tmp_path / 'copy')
  os.system(f'cp -r {workdir} {copy}')
  before = open(os.path.join(copy, 'metrics.jsonl')).read()
  result = loop.train_and_evaluate(tiny_digits_config(), copy)
  assert result.step == 30
  assert open(os.path.join(copy, 'metrics.jsonl')).read() == before  # no duplicate test lines


def test_a_restart_from_step_0_keeps_no_line_of_the_earlier_start(
    trained_workdir, tiny_digits_config, tmp_path
):
  """No checkpoint (e.g. the unreadable ones moved aside): the run starts again from step 0
  and its metrics.jsonl holds one size line, not one per start."""
  import shutil  # pylint: disable=g-import-not-at-top

  from experiments.core import model_size  # pylint: disable=g-import-not-at-top

  workdir, _ = trained_workdir
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  shutil.rmtree(loop.checkpoint_dir(copy))
  result = loop.train_and_evaluate(
      tiny_digits_config(), copy, stop_requested=lambda: signal.SIGTERM
  )
  assert result.step == 1
  history = metric_logging.read_history(copy)
  assert [h['step'] for h in history if model_size.TOTAL in h] == [0]
  assert max(h['step'] for h in history) <= 1


def test_sigterm_and_kill_9_then_resume_is_bit_identical(tmp_path, tiny_digits_flags, popen_run_py):
  """Reference run vs the same command interrupted twice: SIGTERM (clean save, exit
  128 + 15), resume, kill -9 (no save), resume to the end. Same bits at the end."""
  flags = tiny_digits_flags(RESUME)
  run_dir = tmp_path / 'interrupted'
  ref = popen_run_py(
      'train', *flags, '--workdir', str(tmp_path / 'ref'), log_path=str(tmp_path / 'ref.log')
  )

  first = popen_run_py('train', *flags, '--workdir', str(run_dir), log_path=str(tmp_path / '1.log'))
  _wait_for(str(run_dir / 'checkpoints' / '50'), first)
  first.send_signal(signal.SIGTERM)
  assert first.wait(timeout=1200) == 128 + signal.SIGTERM, open(tmp_path / '1.log').read()
  assert 'Stopped at step' in open(tmp_path / '1.log').read()
  stopped_at = checkpointing.Checkpointer(str(run_dir / 'checkpoints')).latest_step()
  assert 50 <= stopped_at < 300

  second = popen_run_py(
      'train', *flags, '--workdir', str(run_dir), log_path=str(tmp_path / '2.log')
  )
  _wait_for(str(run_dir / 'checkpoints' / str((stopped_at // 50 + 2) * 50)), second)
  second.send_signal(signal.SIGKILL)
  assert second.wait() == -signal.SIGKILL
  assert f'Resuming from step {stopped_at}' in open(tmp_path / '2.log').read()

  third = popen_run_py('train', *flags, '--workdir', str(run_dir), log_path=str(tmp_path / '3.log'))
  assert third.wait(timeout=1200) == 0, open(tmp_path / '3.log').read()
  assert 'Resuming from step' in open(tmp_path / '3.log').read()
  assert ref.wait(timeout=1200) == 0, open(tmp_path / 'ref.log').read()

  ref_step, ref_leaves = _final_state(str(tmp_path / 'ref'))
  step, leaves = _final_state(str(run_dir))
  assert ref_step == step == 300
  for a, b in zip(ref_leaves, leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit for bit
  # The metrics log has no duplicates from the replayed steps, and every evaluation (a function of
  # the bit-identical state) matches the reference. Train-metric windows may differ: a stop between
  # two log steps writes a partial window, as it should.
  history = metric_logging.read_history(str(run_dir))
  steps = [h['step'] for h in history if not any(k.startswith('test/') for k in h)]
  assert steps == sorted(set(steps)), steps

  def evaluations(records):
    return [
        (h['step'], k, v)
        for h in records
        for k, v in sorted(h.items())
        if k.startswith(('eval/', 'test/'))
    ]

  expected = evaluations(metric_logging.read_history(str(tmp_path / 'ref')))
  assert {(s, k[:5]) for s, k, _ in expected} == {(150, 'eval/'), (300, 'eval/'), (300, 'test/')}
  assert evaluations(history) == expected
  # The reference run (TensorFlow hidden, as in every run.py of the suite) wrote TensorBoard event
  # files that TensorBoard's own reader takes: the validation curve, at its steps.
  scalars = tensorboard_scalars(str(tmp_path / 'ref' / 'tensorboard'))
  assert {'train/loss', 'train/learning_rate', 'eval/accuracy', 'eval/loss'} <= set(scalars)
  assert [(s, pytest.approx(v)) for s, v in scalars['eval/accuracy']] == [
      (s, v) for s, k, v in expected if k == 'eval/accuracy'
  ]


class _NaNAfterStep3(ClassificationTask):
  """Digits whose images become NaN from the batch of step 3 (0-based) on."""

  def train_source(self):
    source = super().train_source()
    original = source.batch

    def batch(step):
      b = original(step)
      return {**b, 'image': b['image'] * np.nan} if step >= 3 else b

    source.batch = batch
    return source


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_digits_config, monkeypatch
):
  monkeypatch.setattr(loop.registry, 'task_class', lambda name: _NaNAfterStep3)
  config = tiny_digits_config(checkpoint_every_steps=2, log_every_steps=1, eval_every_steps=100)
  workdir = str(tmp_path / 'run')
  with pytest.raises(loop.NonFiniteLossError, match='at step 4; stopped.*checkpoint \\(step 2\\)'):
    loop.train_and_evaluate(config, workdir)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'))
  assert ckpt.all_steps() == [2]
  monkeypatch.undo()
  restored = loop.restore_for_inference(workdir, 'latest')
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored.state.params))


def test_restoring_into_another_model_fails_and_writes_nothing(
    trained_workdir, tmp_path, tiny_digits_config
):
  workdir, _ = trained_workdir
  copy = str(tmp_path / 'copy')
  os.system(f'cp -r {workdir} {copy}')
  before = {f: open(os.path.join(copy, f)).read() for f in ('config.json', 'metrics.jsonl')}
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    loop.train_and_evaluate(tiny_digits_config({'model.d_model': 32}), copy)
  assert 'mismatched shapes' in str(e.value)
  assert 'params/patch_embedding/kernel: checkpoint (16, 16) vs this model (16, 32)' in str(e.value)
  # Same shapes, different model (heads): refused with the changed fields.
  with pytest.raises(checkpointing.CheckpointMismatchError, match='model.dropout_rate: 0.1 -> 0.2'):
    loop.train_and_evaluate(tiny_digits_config({'model.dropout_rate': 0.2}), copy)
  assert before == {f: open(os.path.join(copy, f)).read() for f in before}
  assert checkpointing.Checkpointer(os.path.join(copy, 'checkpoints')).latest_step() == 30


def test_identity_fields():
  assert run_identity.is_identity_field('model.d_model')
  assert run_identity.is_identity_field('data.dataset')
  assert not run_identity.is_identity_field('data.data_dir')
  assert not run_identity.is_identity_field('num_train_steps')
  assert configuration.diff({'a': {'b': 1}}, {'a': {'b': 2}}) == [('a.b', 1, 2)]


def test_auto_dtype_resumes_a_float32_run_on_cpu_only(
    trained_workdir, tiny_digits_config, monkeypatch
):
  workdir, _ = trained_workdir  # config.json: model.dtype 'float32'
  auto = tiny_digits_config({'model.dtype': 'auto'})
  run_identity.check(workdir, auto)  # on a CPU 'auto' is float32: the same experiment
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  with pytest.raises(
      checkpointing.CheckpointMismatchError, match="model.dtype: 'float32' -> 'bfloat16'"
  ):
    run_identity.check(workdir, auto)


def test_final_test_splits_chooses_and_names_unknown_splits():
  task = types.SimpleNamespace(test_splits=('test_2016', 'test_2017', 'test_2018'))
  config = ml_collections.ConfigDict({'final_test_splits': ''})
  assert loop.final_test_splits(config, task) == ['test_2016', 'test_2017', 'test_2018']
  config.final_test_splits = 'test_2017, test_2016'
  assert loop.final_test_splits(config, task) == ['test_2017', 'test_2016']
  config.final_test_splits = 'test_2019'
  with pytest.raises(
      ConfigError, match=r"config.final_test_splits: unknown split\(s\) \['test_2019'\]"
  ):
    loop.final_test_splits(config, task)
