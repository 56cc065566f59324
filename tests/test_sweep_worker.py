"""The sweep worker in-process, with the training loop replaced (what the worker does with each
result; tests/test_sweep_cli.py runs real trials end to end)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import types

import numpy as np
import pytest

from sweep_helpers import load_trials, write_sweep


@pytest.mark.parametrize('stop', [None, signal.SIGTERM])
def test_a_stop_during_the_final_evaluation_completes_the_trial_and_starts_no_other(
    tmp_path, monkeypatch, stop
):
  """TrainResult.stop_requested (a SIGTERM after the last step) -> the trial is COMPLETE with
  its objective and the worker exits 128 + signal instead of starting the next grid point."""
  from experiments import loop  # pylint: disable=g-import-not-at-top
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  calls = []

  def fake_train(config, workdir, on_evaluation=None):
    calls.append(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': 30, 'eval/accuracy': 0.25 * len(calls)}) + '\n')
    state = types.SimpleNamespace(params={'w': np.zeros((3, 4))})
    return loop.TrainResult(state, 30, workdir, {}, stop_requested=stop)

  monkeypatch.setattr(loop, 'train_and_evaluate', fake_train)
  config_path = write_sweep(
      tmp_path, "{'learning_rate': space.grid(1e-3, 3e-3)}", sampler='grid', num_trials=0
  )
  spec = importlib.util.spec_from_file_location('_sweep_config', config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  workdir = str(tmp_path / 'sweep')
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
