"""Tune then compare (experiments/sweep/tune_compare.py, staged.py): the compare stage of a tiny
digits ablation run by `run.py sweep` uses each variant's best tune-stage learning rate, resumes, and is reported with
the chosen rates and where each run stopped."""

from __future__ import annotations

import json
import os
import types

import pytest

from conftest import TINY_DIGITS, _override
from sweep_helpers import load_trials, write_sweep

from experiments.sweep import twins

RATES = (1e-4, 3e-2)  # two rates: each variant's choice is still checked against its logs
STEPS = {'num_train_steps': 20, 'eval_every_steps': 20, 'checkpoint_every_steps': 20}
EARLY_STOPPING = {'eval_loss_every_steps': 2, 'early_stopping_patience': 1}  # most runs stop early


def _tuned(seeds: int = 2, early_stopping: bool = True):
  from experiments.sweep import spec, tune_compare, variants  # pylint: disable=g-import-not-at-top

  base = _override(spec.load_config_file('configs/digits.py'), {**TINY_DIGITS, **STEPS})
  if early_stopping:
    base = _override(base, EARLY_STOPPING)
  c = spec.sweep_config(base)
  c.name, c.sampler, c.num_trials, c.seeds = 'tuned_tiny', 'grid', 0, seeds
  c.objective, c.direction = 'eval/accuracy', 'maximize'
  variants.attach(c, {'base': {}, 'heads=1': {'model.num_heads': 1}})
  return tune_compare.tuned(c, RATES)


def _trial(variant, rate, value, state='COMPLETE'):
  return types.SimpleNamespace(
      params={'variant': variant, 'learning_rate': rate},
      state=types.SimpleNamespace(name=state),
      value=value,
  )


def test_choose_takes_the_best_mean_per_variant():
  from experiments.sweep import tune_compare  # pylint: disable=g-import-not-at-top

  trials = [
      _trial('base', 1e-3, 0.5),
      _trial('base', 1e-3, 0.7),  # mean 0.6
      _trial('base', 3e-3, 0.65),
      _trial('base', 1e-2, None, 'FAIL'),  # diverged: never chosen
      _trial('h=1', 1e-3, 0.2),
      _trial('h=1', 1e-2, 0.2),  # a tie: the smaller rate
  ]
  results = tune_compare.tune_results(trials)
  assert results['base'] == {1e-3: [0.5, 0.7], 3e-3: [0.65], 1e-2: []}
  assert tune_compare.choose(results, 'maximize') == {'base': 3e-3, 'h=1': 1e-3}
  assert tune_compare.choose(results, 'minimize') == {'base': 1e-3, 'h=1': 1e-3}
  with pytest.raises(tune_compare.TuneIncompleteError, match="variant 'x': every tune-stage"):
    tune_compare.choose({'x': {1e-3: []}}, 'maximize')


def test_stages_and_their_checks():
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top
  from experiments.sweep import spec, tune_compare, variants  # pylint: disable=g-import-not-at-top

  c = _tuned(seeds=3)
  with pytest.raises(ConfigError, match='run.py sweep runs both'):
    spec.validate(c, 1)  # run.py sweep would run every variant at the base rate
  tune = tune_compare.tune_stage(c)
  dims = spec.validate(tune, 1)
  assert sorted(d.field for d in dims) == ['learning_rate', 'variant']
  assert tune.seeds == 1 and tune.name == 'tuned_tiny_tune'
  assert spec.total_runs(tune, dims) == 2 * len(RATES)
  compare = tune_compare.compare_stage(c, {'base': 3e-3, 'heads=1': 1e-4})
  assert [d.field for d in spec.validate(compare, 1)] == ['variant']
  assert compare.seeds == 3 and compare.name == 'tuned_tiny'
  assert variants.table(compare)['heads=1'] == {'model.num_heads': 1, 'learning_rate': 1e-4}
  with pytest.raises(ConfigError, match=r"no tuned learning rate for \['heads=1'\]"):
    tune_compare.compare_stage(c, {'base': 3e-3})
  variants.attach(c, {'base': {}, 'lr=1': {'learning_rate': 1.0}})
  with pytest.raises(ConfigError, match='variants.lr=1: sets learning_rate itself'):
    tune_compare.tune_stage(c)
  with pytest.raises(ConfigError, match='tune.learning_rates'):
    tune_compare.tuned(_tuned(), (1e-3, 1e-3))


def test_compare_stage_needs_a_finished_tune_stage(tmp_path):
  from experiments.sweep import tune_compare  # pylint: disable=g-import-not-at-top

  with pytest.raises(tune_compare.TuneIncompleteError, match='no tune stage there yet'):
    tune_compare.chosen_rates(_tuned(), str(tmp_path / 'tune'))


def _best_rates(tune_dir: str) -> dict[str, float]:
  """Independently of tune_compare: per variant the rate of the highest eval/accuracy logged in
  the tune stage's trial directories."""
  best: dict[str, tuple[float, float]] = {}
  for t in load_trials(tune_dir):
    assert t.state.name == 'COMPLETE'
    with open(os.path.join(t.user_attrs['workdir'], 'metrics.jsonl')) as f:
      acc = max(json.loads(l)['eval/accuracy'] for l in f if 'eval/accuracy' in l)
    name, rate = t.params['variant'], t.params['learning_rate']
    if name not in best or (acc, -rate) > (best[name][0], -best[name][1]):
      best[name] = (acc, rate)
  return {n: r for n, (_, r) in best.items()}


# Appended to a sweep_helpers.write_sweep file: the sweep of _tuned() as a config file.
_TUNED = """

from experiments.sweep import tune_compare, variants

_plain = get_config


def get_config():
  c = variants.attach(_plain(), %r)
  return tune_compare.tuned(c, %r)
"""
VARIANTS = {'base': {}, 'heads=1': {'model.num_heads': 1}}


def _write_tuned(directory, name: str, points: dict) -> str:
  """A config file of the tuned tiny ablation with variants `points`, 2 seeds."""
  path = write_sweep(
      directory,
      '{}',
      base={**STEPS, **EARLY_STOPPING},
      name=name,
      sampler='grid',
      num_trials=0,
      seeds=2,
      objective='eval/accuracy',
      direction='maximize',
  )
  with open(path, 'a') as f:
    f.write(_TUNED % (points, RATES))
  return path


@pytest.fixture(scope='module')
def staged_run(run_py, tmp_path_factory):
  """The tuned tiny ablation run by `run.py sweep` (both stages), as a user runs it."""
  tmp = tmp_path_factory.mktemp('tuned')
  path = _write_tuned(tmp, 'tuned_tiny', VARIANTS)
  workdir = str(tmp / 'ablation')
  result = run_py('sweep', '--config', path, '--workdir', workdir, timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'[staged] tune stage in {workdir}/tune' in result.stdout
  assert f'[staged] compare stage in {workdir}/compare' in result.stdout
  return workdir


def test_compare_stage_uses_each_variants_best_rate(staged_run, run_py):
  tune_dir, compare_dir = (os.path.join(staged_run, d) for d in ('tune', 'compare'))
  assert len(load_trials(tune_dir)) == 2 * len(RATES)
  best = _best_rates(tune_dir)
  trials = load_trials(compare_dir)
  assert len(trials) == 2 * 2 and all(t.state.name == 'COMPLETE' for t in trials)
  for t in trials:
    with open(os.path.join(t.user_attrs['workdir'], 'config.json')) as f:
      used = json.load(f)
    assert used['learning_rate'] == best[t.params['variant']]
  assert sorted(t.user_attrs['seed'] for t in trials) == [0, 0, 1, 1]
  # Seed 0 at the chosen rate is a run the tune stage already made: taken, not trained again.
  tune_trials = {str(t.number): t for t in load_trials(tune_dir)}
  adopted = [t for t in trials if twins.ADOPTED_FROM in t.user_attrs]
  assert sorted(t.user_attrs['seed'] for t in adopted) == [0, 0]
  for t in adopted:
    source = t.user_attrs[twins.ADOPTED_FROM]
    twin = tune_trials[os.path.basename(source)]
    assert twin.params == {
        'variant': t.params['variant'],
        'learning_rate': best[t.params['variant']],
    }
    assert t.value == twin.value and t.user_attrs['steps'] == twin.user_attrs['steps']
    for name in ('config.json', 'metrics.jsonl'):
      with (
          open(os.path.join(source, name)) as a,
          open(os.path.join(t.user_attrs['workdir'], name)) as b,
      ):
        assert a.read() == b.read()
  # Resumes: both stages are complete, nothing runs again.
  path = [p for p in os.listdir(os.path.dirname(staged_run)) if p.endswith('.py')][0]
  config = os.path.join(os.path.dirname(staged_run), path)
  result = run_py('sweep', '--config', config, '--workdir', staged_run, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(load_trials(compare_dir)) == 4 and len(load_trials(tune_dir)) == 2 * len(RATES)


def test_report_shows_chosen_rates_and_stopping_steps(staged_run, tmp_path):
  from experiments.analysis import ablation_report  # pylint: disable=g-import-not-at-top

  compare_dir = os.path.join(staged_run, 'compare')
  best = _best_rates(os.path.join(staged_run, 'tune'))
  out = str(tmp_path / 'report')
  assert ablation_report.main(['--workdir', compare_dir, '--out', out]) == 0
  with open(os.path.join(out, 'ablation.md')) as f:
    report = f.read()
  assert '## Tuning and convergence' in report
  command = f'python run.py sweep --config configs/ablations/tuned.py:tiny --workdir {staged_run}\n'
  assert command in report
  with open(os.path.join(staged_run, 'tune', 'ablation.md')) as f:  # the tune stage's own report
    tune_report = f.read()
  assert command in tune_report and '**A tune stage**' in tune_report
  assert '**A tune stage**' not in report
  for name, rate in best.items():
    (line,) = [
        l
        for l in report.splitlines()
        if l.startswith(f'| {name} |') and 'lr' not in l and l.endswith(f'| {rate:g} |')
    ]
    assert line.count('**') == 2  # one bold cell: the chosen rate's
  stops = {}
  for t in load_trials(compare_dir):
    with open(os.path.join(t.user_attrs['workdir'], 'metrics.jsonl')) as f:
      history = [json.loads(l) for l in f]
    stopped = [h['early_stopping/stopped_at'] for h in history if 'early_stopping/stopped_at' in h]
    stops.setdefault(t.params['variant'], {})[t.user_attrs['seed']] = (
        f'{stopped[0]}' if stopped else f'{max(h["step"] for h in history)} (cap)'
    )
  any_early = any('cap' not in v for by_seed in stops.values() for v in by_seed.values())
  assert ('No run stopped early' in report) == (not any_early)
  # Two rates tried: every chosen rate is at an edge of the grid, and the report says so.
  (edge,) = [l for l in report.splitlines() if l.startswith('At the edge of the rates tried')]
  assert all(name in edge for name in best)
  for name, by_seed in stops.items():
    shown = ', '.join(by_seed[s] for s in sorted(by_seed))
    assert any(
        l.startswith(f'| {name} | 2 |') and l.endswith(f'| {shown} |') for l in report.splitlines()
    )


def test_another_ablation_on_the_same_base_reuses_its_runs(staged_run, run_py, tmp_path):
  """`run.py sweep --reuse DIR` (experiments/sweep/twins.py): a second tuned ablation on the same
  base takes the base's tune and compare runs from the first (same config and seed), and trains
  only its own variant's runs."""
  path = _write_tuned(tmp_path, 'tuned_tiny_other', {'base': {}, 'heads=4': {'model.num_heads': 4}})
  workdir = str(tmp_path / 'other')
  for bad, why in (
      (str(tmp_path / 'nothing'), 'does not exist'),
      (str(tmp_path), 'holds no sweep'),
  ):
    result = run_py('sweep', '--config', path, '--workdir', workdir, '--reuse', bad)
    assert result.returncode == 2 and not os.path.exists(workdir)
    assert result.stderr.strip().splitlines()[-1].startswith(f'run.py: error: --reuse {bad}: {why}')
  result = run_py('sweep', '--config', path, '--workdir', workdir, '--reuse', staged_run)
  assert result.returncode == 0, result.stderr[-3000:]
  # The base: 2 tune runs and the seed-1 compare run from staged_run, seed 0 from its own tune
  # stage; heads=4: seed 0 from its own tune stage. Trained: heads=4's 2 tune runs and seed 1.
  assert result.stdout.count('not trained again') == 5
  tune = load_trials(os.path.join(workdir, 'tune'))
  compare = load_trials(os.path.join(workdir, 'compare'))
  sources = {'tune': load_trials(os.path.join(staged_run, 'tune'))}
  sources['compare'] = load_trials(os.path.join(staged_run, 'compare'))
  for t in tune + compare:
    source = t.user_attrs.get(twins.ADOPTED_FROM, '')
    if t.params['variant'] == 'heads=4':
      assert not source.startswith(staged_run)
      continue
    stage = os.path.basename(os.path.dirname(os.path.dirname(source)))
    if t in tune or t.user_attrs['seed'] == 1:
      assert os.path.dirname(os.path.dirname(os.path.dirname(source))) == staged_run
    else:  # seed 0 of the compare stage: the own tune stage's (adopted) copy
      assert source.startswith(os.path.join(workdir, 'tune'))
      continue
    twin = [s for s in sources[stage] if str(s.number) == os.path.basename(source)][0]
    assert t.value == twin.value and t.params['variant'] == twin.params['variant'] == 'base'
    assert t.user_attrs['seed'] == twin.user_attrs['seed']
    with (
        open(os.path.join(source, 'metrics.jsonl')) as a,
        open(os.path.join(t.user_attrs['workdir'], 'metrics.jsonl')) as b,
    ):
      assert a.read() == b.read()
  assert (
      sum(t.params['variant'] == 'base' and twins.ADOPTED_FROM in t.user_attrs for t in tune) == 2
  )
  assert len(compare) == 4 and all(t.state.name == 'COMPLETE' for t in tune + compare)
  # The report's command to regenerate it is the one that ran: with --reuse (the own tune stage
  # is not another sweep), and without it where nothing came from elsewhere.
  for sweep_dir, tail in ((workdir, f' --reuse {staged_run}'), (staged_run, '')):
    with open(os.path.join(sweep_dir, 'compare', 'ablation.md')) as f:
      command = [l for l in f.read().splitlines() if 'run.py sweep' in l]
    assert command and command[0].endswith(f'--workdir {sweep_dir}{tail}'), command


def test_a_sweep_carried_without_checkpoints_resumes_and_reports(staged_run, run_py, tmp_path):
  """Another machine gets the sweep's record (experiments/sweep/record.py: no checkpoints, assets,
  events or locks): the tune stage still chooses the same rates, the same command finds both
  stages complete, and the report is written from the carried files, its attention grid from
  the seed-0 runs' carried attention views. A record is never copied over a journal that went on
  without it."""
  from experiments.analysis import ablation_report  # pylint: disable=g-import-not-at-top
  from experiments.analysis import attention_view  # pylint: disable=g-import-not-at-top
  from experiments.sweep import record, tune_compare  # pylint: disable=g-import-not-at-top

  VIEW = attention_view.VIEW_FILE  # pylint: disable=invalid-name
  carried = str(tmp_path / 'carried')
  assert record.main([staged_run, carried]) == 0
  assert sorted(record.sweep_dirs(carried)) == ['compare', 'tune']
  kept = {n for _, _, names in os.walk(carried) for n in names}
  assert {'journal.log', 'sweep.json', 'config.json', 'metrics.jsonl'} <= kept
  views = sorted(
      os.path.relpath(here, carried) for here, _, names in os.walk(carried) if VIEW in names
  )
  seed_zero = sorted(
      os.path.relpath(os.path.join(stage, 'trials', str(t.number)), carried)
      for stage in (os.path.join(carried, s) for s in ('tune', 'compare'))
      for t in load_trials(stage)
      if t.user_attrs['seed'] == 0
  )
  assert views == seed_zero and len(views) == 2 * len(RATES) + 2  # tune runs + compare seed 0
  assert not kept & {'.worker', 'journal.log.lock', 'spm.model'}
  assert not any('checkpoints' in dirs for _, dirs, _ in os.walk(carried))
  assert tune_compare.chosen_rates(_tuned(), os.path.join(carried, 'tune')) == _best_rates(
      os.path.join(staged_run, 'tune')
  )
  path = [p for p in os.listdir(os.path.dirname(staged_run)) if p.endswith('.py')][0]
  config = os.path.join(os.path.dirname(staged_run), path)
  result = run_py('sweep', '--config', config, '--workdir', carried, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(load_trials(os.path.join(carried, 'compare'))) == 4  # nothing ran again
  assert not any('checkpoints' in dirs for _, dirs, _ in os.walk(carried))

  # Only the tune stage carried: the compare stage runs, taking its seed-0 runs from the
  # carried tune trials (config.json and metrics.jsonl, no checkpoints) and training the rest.
  tune_only = str(tmp_path / 'tune_only')
  assert record.main([os.path.join(staged_run, 'tune'), os.path.join(tune_only, 'tune')]) == 0
  result = run_py('sweep', '--config', config, '--workdir', tune_only, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count('not trained again') == 2
  compared = load_trials(os.path.join(tune_only, 'compare'))
  adopted = sorted(t.user_attrs['seed'] for t in compared if twins.ADOPTED_FROM in t.user_attrs)
  assert adopted == [0, 0] and len(compared) == 4

  reports = {}
  for name, sweep_dir in (('original', staged_run), ('carried', carried)):
    out = str(tmp_path / name)
    assert (
        ablation_report.main(['--workdir', os.path.join(sweep_dir, 'compare'), '--out', out]) == 0
    )
    with open(os.path.join(out, 'ablation.md')) as f:
      reports[name] = f.read()
  grid = '## Attention of the same input per variant'
  assert grid in reports['original'] and grid in reports['carried']
  grids = [  # the original's drawn from the checkpoints, the carried one from the views
      open(os.path.join(tmp_path, name, 'plots', 'ablation_attention.png'), 'rb').read()
      for name in ('original', 'carried')
  ]
  assert grids[0] == grids[1]
  table = lambda text: [l for l in text.splitlines() if l.startswith('| ')]
  assert table(reports['carried']) == table(reports['original'])  # every table, from metrics
  for rel in views:
    os.remove(os.path.join(carried, rel, VIEW))
  out = str(tmp_path / 'no_views')
  assert ablation_report.main(['--workdir', os.path.join(carried, 'compare'), '--out', out]) == 0
  with open(os.path.join(out, 'ablation.md')) as f:
    assert 'No attention grid: a seed-0 run has neither a checkpoint nor' in f.read()

  # The sweep went on at the copy (one more journal record): copying the older record over it
  # would lose that record, so it is refused and nothing changes.
  journal = os.path.join(carried, 'tune', 'journal.log')
  with open(journal, 'a') as f:
    f.write('{}\n')
  before = {p: open(p, 'rb').read() for p in (journal, os.path.join(carried, 'tune', 'sweep.json'))}
  with pytest.raises(
      record.RecordError, match='holds records that .* lacks .*; nothing was copied'
  ):
    record.copy(staged_run, carried)
  assert {p: open(p, 'rb').read() for p in before} == before
  assert record.main([str(tmp_path / 'nothing'), carried]) == 1


def test_reuse_dirs_names_each_other_sweep_once_and_leaves_out_the_own_stages():
  """twins.reuse_dirs: the --reuse dirs of a report's command, from the trials' ADOPTED_FROM."""
  trial = lambda source: types.SimpleNamespace(  # noqa: E731
      user_attrs={twins.ADOPTED_FROM: source} if source else {}
  )
  trials = [
      trial('runs/own/tune/trials/3'),  # seed 0 of the compare stage: its own tune stage
      trial('runs/heads/tune/trials/0'),  # a tuned ablation's stages: its DIR
      trial(None),  # trained here
      trial('runs/heads/compare/trials/14'),
      trial('runs/plain_sweep/trials/2/'),  # a plain sweep dir
  ]
  assert twins.reuse_dirs(trials, 'runs/own') == ['runs/heads', 'runs/plain_sweep']
  assert twins.reuse_dirs(trials[:1], 'runs/own/') == []
  assert twins.reuse_dirs(trials, 'runs/heads') == ['runs/own', 'runs/plain_sweep']
