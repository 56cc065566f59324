"""Two sweep workers share one study through a real, throw-away PostgreSQL server.

The fixture runs the Debian `postgresql` package's binaries (initdb / pg_ctl, found on PATH
or in /usr/lib/postgresql/*/bin) as a non-root user on a free localhost port in a temporary
directory, with password authentication. No mocks: Optuna's RDBStorage talks to the server
through psycopg2. Skipped (with the reason) where the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REPO_ROOT, cli_env
from sweep_helpers import write_sweep

PASSWORD = 'pg-s3cret-for-tests'
AT_USER, AT_PASSWORD = 'atsweeper', 'pg@s3cret-with-at'  # a password with an '@' in it


def _bin_dir() -> str | None:
  found = shutil.which('initdb')
  if found:
    return os.path.dirname(os.path.realpath(found))
  dirs = sorted(glob.glob('/usr/lib/postgresql/*/bin'))
  return dirs[-1] if dirs and os.path.exists(os.path.join(dirs[-1], 'initdb')) else None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def postgres_url():
  """postgresql://sweeper@127.0.0.1:PORT/sweeps (password in $PGPASSWORD for the workers)."""
  bin_dir = _bin_dir()
  if bin_dir is None:
    pytest.skip('PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql')
  pytest.importorskip('psycopg2', reason='psycopg2 (the PostgreSQL driver) is not installed')
  root = tempfile.mkdtemp(prefix='sweep_pg_')
  run_as: list[str] = []
  if os.geteuid() == 0:  # initdb refuses to run as root
    user = next((u for u in ('postgres', 'nobody') if _has_user(u)), None)
    if user is None or shutil.which('runuser') is None:
      pytest.skip('running as root without a postgres/nobody user and runuser')
    pw = pwd.getpwnam(user)
    os.chmod(root, 0o755)
    os.chown(root, pw.pw_uid, pw.pw_gid)
    run_as = ['runuser', '-u', user, '--']
  data, port = os.path.join(root, 'data'), _free_port()
  pwfile = os.path.join(root, 'pw')
  with open(pwfile, 'w') as f:
    f.write(PASSWORD + '\n')
  if run_as:
    os.chown(pwfile, pw.pw_uid, pw.pw_gid)

  def pg(*args: str) -> None:
    subprocess.run([*run_as, *args], check=True, capture_output=True, text=True, timeout=300)

  try:
    pg(
        os.path.join(bin_dir, 'initdb'),
        '-D', data, '-U', 'sweeper', '--pwfile', pwfile, '--auth=scram-sha-256', '-E', 'UTF8',
    )  # fmt: skip
    pg(
        os.path.join(bin_dir, 'pg_ctl'), '-D', data, '-l', os.path.join(root, 'log'), '-w',
        '-o', f'-p {port} -k {root} -c listen_addresses=127.0.0.1', 'start',
    )  # fmt: skip
  except subprocess.CalledProcessError as e:
    shutil.rmtree(root, ignore_errors=True)
    pytest.fail(f'could not start PostgreSQL: {e.stderr}')
  try:
    import psycopg2  # pylint: disable=g-import-not-at-top

    conn = psycopg2.connect(
        host='127.0.0.1', port=port, user='sweeper', password=PASSWORD, dbname='postgres'
    )
    conn.autocommit = True
    conn.cursor().execute('CREATE DATABASE sweeps')
    conn.cursor().execute(f"CREATE ROLE {AT_USER} LOGIN PASSWORD '{AT_PASSWORD}' IN ROLE sweeper")
    conn.close()
    yield f'postgresql://sweeper@127.0.0.1:{port}/sweeps'
  finally:
    subprocess.run(
        [*run_as, os.path.join(bin_dir, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop'],
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
  try:
    pwd.getpwnam(name)
    return True
  except KeyError:
    return False


def test_two_workers_share_one_study_through_postgres(postgres_url, tmp_path):
  import optuna  # pylint: disable=g-import-not-at-top

  config = write_sweep(
      tmp_path, "{'learning_rate': space.log_float(1e-3, 1e-2)}", sampler='random', num_trials=4
  )
  # Two "machines": separate sweep dirs, one study. The password comes from $PGPASSWORD.
  env = cli_env(PGPASSWORD=PASSWORD)
  procs, logs = [], []
  for name in ('a', 'b'):
    logs.append(open(tmp_path / f'{name}.log', 'w+'))  # pylint: disable=consider-using-with
    procs.append(
        subprocess.Popen(
            [sys.executable, os.path.join(REPO_ROOT, 'run.py'), 'sweep', '--config', config,
             '--workdir', str(tmp_path / name), '--storage', postgres_url],
            cwd=REPO_ROOT, env=env, stdout=logs[-1], stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    )
    time.sleep(1.0)  # the first creates the study
  codes = [p.wait(timeout=1800) for p in procs]
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append(log.read())
    log.close()
  assert codes == [0, 0], outputs
  from experiments.sweep import storage as storage_lib  # pylint: disable=g-import-not-at-top

  url = postgres_url.replace('sweeper@', f'sweeper:{PASSWORD}@')
  storage = storage_lib.open_storage(url, str(tmp_path))
  name = os.path.splitext(os.path.basename(config))[0]
  trials = optuna.load_study(study_name=name, storage=storage).get_trials()
  assert sorted(t.number for t in trials) == [0, 1, 2, 3]
  assert all(t.state.name == 'COMPLETE' for t in trials)
  # Both machines started from the same sampler_seed: still four different points.
  assert len({t.params['learning_rate'] for t in trials}) == 4
  by_dir = {os.path.dirname(os.path.dirname(t.user_attrs['workdir'])) for t in trials}
  assert by_dir == {str(tmp_path / 'a'), str(tmp_path / 'b')}  # both workers ran trials
  for name in ('a', 'b'):  # the report of either machine lists every trial
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'run.py'), 'report',
         '--workdir', str(tmp_path / name), '--storage', postgres_url],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = (tmp_path / name / 'report.md').read_text()
    assert all(f'| {n} | COMPLETE' in report for n in range(4))


def test_a_password_in_the_url_is_masked_everywhere(postgres_url, tmp_path):
  config = write_sweep(
      tmp_path, "{'learning_rate': space.grid(3e-3)}", sampler='grid', num_trials=0, name='masked'
  )
  host_db = postgres_url.split('@', 1)[1]
  forms = [  # (URL, its secret): each credential form of a SQLAlchemy URL
      (postgres_url.replace('sweeper@', f'sweeper:{PASSWORD}@'), PASSWORD),
      (f'{postgres_url}?password={PASSWORD}', PASSWORD),
      (f'postgresql://{AT_USER}:{AT_PASSWORD}@{host_db}', AT_PASSWORD),  # '@' not escaped
  ]
  outputs = []
  for url, _ in forms:  # the first trains the trial; the others reopen the finished sweep
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'run.py'), 'sweep', '--config', config,
         '--workdir', str(tmp_path / 'sweep'), '--storage', url],
        cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert ':***@' in result.stdout or 'password=***' in result.stdout
    outputs.append(result.stdout + result.stderr)
  secrets = [PASSWORD, AT_PASSWORD, AT_PASSWORD.split('@')[1]]
  for text in outputs:
    assert not any(secret in text for secret in secrets)
  for root, _, files in os.walk(tmp_path / 'sweep'):
    for f in files:
      with open(os.path.join(root, f), 'rb') as fh:
        content = fh.read()
      assert not any(secret.encode() in content for secret in secrets), os.path.join(root, f)
  # A wrong password: a clear error, nothing leaked.
  bad = postgres_url.replace('sweeper@', 'sweeper:wrong-pw@')
  result = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, 'run.py'), 'report',
       '--workdir', str(tmp_path / 'sweep'), '--storage', bad],
      cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=600, check=False,
  )  # fmt: skip
  assert result.returncode == 1
  assert 'cannot open the sweep storage' in result.stderr and 'wrong-pw' not in result.stderr
