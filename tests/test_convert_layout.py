"""experiments/core/convert_layout.py: a trained workdir converted to scanned layers evaluates the
same, and converting back restores the original parameters exactly."""

import jax
import numpy as np
import pytest

from experiments.core import convert_layout, loop
from experiments.core.task import RunError


def test_convert_to_scanned_and_back(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  original = loop.restore_for_inference(workdir, 'latest')
  scanned_dir, back_dir = str(tmp_path / 'scanned'), str(tmp_path / 'back')
  steps = convert_layout.convert_workdir(workdir, scanned_dir, scan_layers=True)
  assert steps == original_steps(workdir)

  scanned = loop.restore_for_inference(scanned_dir, 'latest')
  assert scanned.config.model.scan_layers and scanned.step == original.step
  assert 'layers' in scanned.state.params['encoder']
  want = original.trainer.evaluate(original.state, 'validation')
  got = scanned.trainer.evaluate(scanned.state, 'validation')
  assert got.keys() == want.keys()
  for name in want:
    np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
  # The best checkpoint is still known (metrics carried over).
  assert loop.restore_for_inference(scanned_dir, 'best').step == (
      loop.restore_for_inference(workdir, 'best').step
  )

  convert_layout.convert_workdir(scanned_dir, back_dir, scan_layers=False)
  back = loop.restore_for_inference(back_dir, 'latest')
  jax.tree.map(np.testing.assert_array_equal, back.state.params, original.state.params)
  jax.tree.map(np.testing.assert_array_equal, back.state.opt_state, original.state.opt_state)

  with pytest.raises(RunError, match='already has model.scan_layers=False'):
    convert_layout.convert_workdir(back_dir, str(tmp_path / 'again'), scan_layers=False)
  with pytest.raises(RunError, match='already holds checkpoints'):
    convert_layout.convert_workdir(workdir, scanned_dir, scan_layers=True)


def original_steps(workdir):
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top

  return checkpointing.Checkpointer(loop.checkpoint_dir(workdir), read_only=True).all_steps()
