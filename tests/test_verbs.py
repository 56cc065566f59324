"""experiments/verbs.py: verb objects and flag parsing helpers (CLI runs: test_run_cli.py)."""

import pytest

from experiments import verbs


def test_parse_checkpoint():
  assert verbs.parse_checkpoint('latest') == 'latest'
  assert verbs.parse_checkpoint('best') == 'best'
  assert verbs.parse_checkpoint('1200') == 1200
  with pytest.raises(ValueError, match="got 'last'"):
    verbs.parse_checkpoint('last')


def test_verbs_have_help(capsys):
  for verb in (verbs.TRAIN, verbs.EVAL):
    assert verb.usage.startswith(f'python run.py {verb.name} ') and verb.summary
  assert verbs.error('boom', 3) == 3
  assert capsys.readouterr().err == 'run.py: error: boom\n'
