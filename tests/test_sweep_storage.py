"""experiments/sweep/storage.py and files.py: credentials in URLs, a torn journal, the sweep
dir's own files."""

from __future__ import annotations

import os

import pytest

from experiments.sweep import files, storage
from sweep_helpers import fake_training, load_sweep_config, load_trials, write_sweep

# Every form of credential a SQLAlchemy URL takes: (URL, the secret, the masked URL).
URLS = [
    ('postgresql://sweeper:hunter2@db:5432/sweeps', 'hunter2', 'postgresql://sweeper:***@db:5432/sweeps'),
    ('postgresql://sweeper:p%40ss-w0rd@db/sweeps', 'p@ss-w0rd', 'postgresql://sweeper:***@db/sweeps'),
    ('postgresql://sweeper:p@ss-w0rd@db/sweeps', 'p@ss-w0rd', 'postgresql://sweeper:***@db/sweeps'),
    ('postgresql://sweeper@db/sweeps?password=hunter2&sslmode=require', 'hunter2',
     'postgresql://sweeper@db/sweeps?password=***&sslmode=require'),
    ('postgresql+psycopg2://:hunter2@/sweeps?host=/run/pg', 'hunter2',
     'postgresql+psycopg2://:***@/sweeps?host=/run/pg'),
    ('postgresql://sweeper@db/sweeps?sslpassword=k3y-pass', 'k3y-pass',
     'postgresql://sweeper@db/sweeps?sslpassword=***'),
]  # fmt: skip


@pytest.mark.parametrize('url, secret, masked', URLS)
def test_every_credential_form_is_masked(url, secret, masked):
  assert storage.mask(url) == masked
  quoted = secret.replace('@', '%40')
  message = f'connection to {url} failed: password "{secret}" ({quoted}) rejected'
  scrubbed = storage.scrub(message, url)
  assert secret not in scrubbed and quoted not in scrubbed and masked in scrubbed
  assert storage.describe(url, '/x') == masked


def test_an_unescaped_at_in_the_password_reaches_the_driver_whole():
  from sqlalchemy.engine import make_url  # pylint: disable=g-import-not-at-top

  parsed = make_url(storage.normalize('postgresql://sweeper:p@ss@db:5432/sweeps'))
  assert (parsed.password, parsed.host, parsed.port) == ('p@ss', 'db', 5432)
  assert storage.normalize(URLS[1][0]) == URLS[1][0]


def test_a_torn_last_journal_record_is_dropped_once_and_the_sweep_goes_on(
    tmp_path, monkeypatch, capsys
):
  """A record cut short (disk full, power loss): Optuna would glue the next append to it and
  then call every later open of the journal corrupt."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  fake_training(monkeypatch)
  path = write_sweep(
      tmp_path, "{'learning_rate': space.grid(1e-3, 2e-3)}", sampler='grid', num_trials=1
  )
  config, workdir = load_sweep_config(path), str(tmp_path / 'sweep')
  assert cli.run_worker(config, path, workdir, None) == 0
  journal = os.path.join(workdir, 'journal.log')
  whole = open(journal, 'rb').read()
  torn = b'{"op_code":5,"worker_id":"x","trial_id":0,"user_at'
  with open(journal, 'ab') as f:
    f.write(torn)
  capsys.readouterr()
  config.num_trials = 0  # the rest of the grid: appends to the repaired journal
  assert cli.run_worker(config, path, workdir, None) == 0
  err = capsys.readouterr().err
  assert err.count('incomplete record') == 1 and 'dropped it' in err
  assert open(journal, 'rb').read().startswith(whole)
  assert open(journal + '.torn', 'rb').read() == torn + b'\n'
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE', 'COMPLETE']
  storage.open_storage(None, workdir)  # whole again: nothing more to say
  assert 'incomplete' not in capsys.readouterr().err


def test_a_record_torn_while_the_sweep_runs_is_cut_off_before_the_next_append(
    tmp_path, monkeypatch, capsys
):
  """Another worker's append was cut short (its disk filled up) while this one runs."""
  from experiments.sweep import cli  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'sweep')

  def torn_by_another_writer(tdir, kwargs):  # pylint: disable=unused-argument
    if len(calls) == 2:
      with open(os.path.join(workdir, 'journal.log'), 'ab') as f:
        f.write(b'{"op_code":5,"worker_id":"x","tri')

  calls = fake_training(monkeypatch, before=torn_by_another_writer)
  path = write_sweep(
      tmp_path, "{'learning_rate': space.grid(1e-3, 2e-3, 3e-3)}", sampler='grid', num_trials=0
  )
  assert cli.run_worker(load_sweep_config(path), path, workdir, None) == 0
  assert capsys.readouterr().err.count('incomplete record') == 1
  assert [t.state.name for t in load_trials(workdir)] == ['COMPLETE'] * 3


def test_each_writer_has_its_own_temporary_file(tmp_path, monkeypatch):
  """Two workers rewriting sweep.json / report.md never rename one another's temporary file."""
  renamed = []
  replace = os.replace
  monkeypatch.setattr(os, 'replace', lambda a, b: (renamed.append(a), replace(a, b)))
  target = str(tmp_path / 'report.md')
  files.write_atomic(target, 'one')
  files.write_atomic(target, 'two')
  assert open(target).read() == 'two' and len(set(renamed)) == 2
  assert all(os.path.dirname(a) == str(tmp_path) for a in renamed)
  assert os.listdir(tmp_path) == ['report.md']
  with open(tmp_path / 'plain', 'w'):
    pass
  assert os.stat(target).st_mode == os.stat(tmp_path / 'plain').st_mode  # readable by others


def test_a_schema_created_by_another_worker_at_once_is_opened_again(monkeypatch):
  """Two workers creating the database tables at the same moment: the loser's unique-key
  conflict (sqlalchemy IntegrityError) is retried; a conflict every time is a one-line error."""
  import sqlalchemy.exc  # pylint: disable=g-import-not-at-top

  from experiments.sweep import storage  # pylint: disable=g-import-not-at-top

  calls = []

  def rdb(url, engine_kwargs):  # pylint: disable=unused-argument
    calls.append(url)
    if len(calls) < conflicts_before_success:
      raise sqlalchemy.exc.IntegrityError('INSERT', {}, Exception('duplicate key'))
    return 'opened'

  monkeypatch.setattr(storage.optuna.storages, 'RDBStorage', rdb)
  monkeypatch.setattr(storage.time, 'sleep', lambda s: None)
  conflicts_before_success = 2  # one conflict, then the schema is there
  assert storage.open_storage('postgresql://u:secret@h/db', '') == 'opened' and len(calls) == 2
  calls.clear()
  conflicts_before_success = storage.SCHEMA_TRIES + 1  # never opens
  with pytest.raises(storage.StorageError, match='unique-key conflicts') as e:
    storage.open_storage('postgresql://u:secret@h/db', '')
  assert len(calls) == storage.SCHEMA_TRIES and 'secret' not in str(e.value)
