"""The ablation report's statistics and paper rows: Welch Δ and Holm p over a report's rows,
paper rows matched by value on the same side of the base, ties, and the table's cells."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from experiments.analysis import ablation_report as ar
from experiments.analysis import ablation_table as at
from experiments.analysis import paper
from experiments.analysis import results
from experiments.analysis import stats
from experiments.sweep import tune_compare


def test_paper_row_is_matched_by_value_not_by_name():
  # Ours N=4 against OUR base N=2 is deeper than the base: the paper's deeper row is N=8, not
  # its N=4 (which is shallower than the paper's base N=6).
  name, row = paper.reference('N=4', 'N', 4, 2)
  assert (name, row.bleu, row.ppl) == ('N=8', 25.5, 4.88)
  # Ours N=1 (half the base): of the paper's shallower rows N=2 (1/3) and N=4 (2/3), N=4 is
  # nearer in log ratio (|log 0.5 - log 2/3| = 0.29 < |log 0.5 - log 1/3| = 0.41).
  assert paper.reference('N=1', 'N', 1, 2)[0] == 'N=4'
  # h=1 against a base of 2 heads is half the base: the paper's h=4 (half of 8), not its h=1.
  assert paper.reference('heads=1', 'heads', 1, 2)[0] == 'heads=4'
  assert paper.reference('heads=16', 'heads', 16, 8)[0] == 'heads=16'  # ratio 2, not h=32
  assert paper.reference('d_model=256', 'd_model', 256, 128)[0] == 'd_model=1024'
  # A zero value has no ratio: the difference from the base matches (0.0 - 0.1).
  assert paper.reference('dropout=0.0', 'dropout', 0.0, 0.1)[0] == 'dropout=0.0'
  assert paper.reference('dropout=0.2', 'dropout', 0.2, 0.1)[0] == 'dropout=0.2'
  # Categorical rows by name; rows the paper lacks and our base itself: none.
  assert paper.reference('positional=learned', 'positional', 'learned', 'sinusoidal')[0] == (
      'positional=learned'
  )
  assert paper.reference('positional=rope', 'positional', 'rope', 'sinusoidal') is None
  assert paper.reference('score=dot', 'score', 'dot', 'scaled_dot') is None
  assert paper.reference('N=2', 'N', 2, 2) is None


def _diff(delta: float, low: float, high: float) -> stats.Difference:
  return stats.Difference(3, 3, delta, low, high, 0.01, 4.0)


def test_paper_direction_agrees_disagrees_ties_and_not_significant():
  n8 = paper.rows()['N=8']  # BLEU 25.5 < 25.8: deeper is worse in Table 3 (C)
  assert paper.direction(_diff(-1.0, -1.5, -0.5), n8, 'bleu') == 'agrees'
  assert paper.direction(_diff(+1.0, +0.5, +1.5), n8, 'bleu') == 'disagrees'
  assert paper.direction(_diff(-1.0, -2.0, +0.1), n8, 'bleu') == 'n.s.'  # interval holds 0
  one_seed = stats.welch([16.0], [17.0, 17.2])
  assert paper.direction(one_seed, n8, 'bleu') == 'n.s.'  # no interval at all
  # A minimised objective against PPL: N=8 lowers PPL (4.88 < 4.92), so a rise of ours disagrees.
  assert paper.direction(_diff(+1.0, +0.5, +1.5), n8, 'ppl') == 'disagrees'
  assert paper.direction(_diff(-1.0, -1.5, -0.5), n8, 'ppl') == 'agrees'
  # Ties: the paper's change within its 0.1 BLEU resolution (h=16: 0; learned positions and
  # label smoothing 0.2: -0.1), whatever our effect.
  for row in ('heads=16', 'positional=learned', 'label_smoothing=0.2'):
    assert paper.direction(_diff(+3.0, +2.0, +4.0), paper.rows()[row], 'bleu') == 'tie'
  # In PPL label smoothing 0.2 is no tie (5.47 vs 4.92): higher PPL, i.e. the sign of a rise.
  assert paper.direction(_diff(+3.0, +2.0, +4.0), paper.rows()['label_smoothing=0.2'], 'ppl') == (
      'agrees'
  )
  assert paper.direction(_diff(1.0, 0.5, 1.5), None, 'bleu') == '–'


def _groups(objectives: dict[str, list[float]]) -> dict:
  return {
      name: {
          'objective': v,
          'metrics': {},
          'rows': [{'num_params': 10, 'seed': i} for i in range(len(v))],
      }
      for name, v in objectives.items()
  }


def test_comparisons_holm_over_the_whole_report():
  base = [0.90, 0.91, 0.92]
  objectives = {
      'base': base,
      'heads=1': [0.80, 0.81, 0.79],
      'heads=4': [0.905, 0.92, 0.915],
      'N=4': [0.70, 0.74, 0.72, 0.71],
      'N=1': [0.5],  # one run: no p, not in the family
  }
  tests = at.comparisons(_groups(objectives), ['base', 'heads=1', 'heads=4', 'N=1', 'N=4'])
  assert list(tests) == ['heads=1', 'heads=4', 'N=1', 'N=4']
  p = {n: tests[n][0].p for n in ('heads=1', 'heads=4', 'N=4')}
  for n, pv in p.items():  # Welch p of each row, recomputed with scipy's test
    from scipy.stats import ttest_ind  # pylint: disable=g-import-not-at-top

    assert pv == pytest.approx(ttest_ind(objectives[n], base, equal_var=False).pvalue)
  # Holm over the 3 rows with a p, whatever axis they belong to.
  ranked = sorted(p, key=p.get)
  expected, running = {}, 0.0
  for i, n in enumerate(ranked):
    running = max(running, min(1.0, (3 - i) * p[n]))
    expected[n] = running
  for n in p:
    assert tests[n][1] == pytest.approx(expected[n])
  assert math.isnan(tests['N=1'][1]) and not tests['N=1'][0].has_interval


def test_axis_table_reports_n_interval_p_holm_and_the_value_matched_paper_row():
  objectives = {'base': [17.0, 17.3, 17.2], 'N=4': [13.0, 13.5, 13.4], 'N=1': [17.1, 16.9, 17.3]}
  groups = _groups(objectives)
  tests = at.comparisons(groups, list(objectives))
  info = {'base_value': 2, 'variants': [('N=4', 4), ('N=1', 1)]}
  lines = at.axis_table('N', info, groups, 'eval/bleu', False, tests)
  head = [c.strip() for c in lines[0].strip('|').split('|')]
  assert head[:3] == ['variant', 'n', 'eval/bleu (mean ± std)']
  assert head[-5:] == [
      'Δ vs base [95% interval]',
      'p',
      'Holm p',
      'beyond spread',
      'paper direction',
  ]
  rows = {l.split('|')[1].strip(): [c.strip() for c in l.strip('|').split('|')] for l in lines[2:]}
  assert list(rows) == ['1', '2 (base)', '4']  # sorted by value
  deeper = rows['4']
  d = stats.welch(objectives['N=4'], objectives['base'])
  assert deeper[1] == '3'
  assert deeper[-5] == f'{d.delta:+.3g} [{d.low:+.3g}, {d.high:+.3g}]'
  assert deeper[-4] == f'{d.p:.2g}' and deeper[-3] == f'{tests["N=4"][1]:.2g}'
  assert deeper[-2] == 'yes'  # BLEU -3.9 with 3 seeds each: Holm p < 0.05
  assert '4.88 (N=8)' in deeper and '25.5 (N=8)' in deeper  # not the paper's N=4 (5.19, 25.3)
  assert deeper[-1] == 'agrees (paper -0.3)'  # deeper: lower BLEU, as N=8 vs N=6 in the paper
  shallower = rows['1']
  assert shallower[-2] == 'no' and shallower[-1] == 'n.s. (paper -0.5)'  # Δ ≈ -0.07
  assert rows['2 (base)'][-5:] == [''] * 5


def test_axis_table_with_one_run_has_no_interval():
  groups = _groups({'base': [0.9, 0.91], 'heads=1': [0.5]})
  tests = at.comparisons(groups, ['base', 'heads=1'])
  info = {'base_value': 2, 'variants': [('heads=1', 1)]}
  lines = at.axis_table('heads', info, groups, 'eval/accuracy', False, tests)
  (row,) = [l for l in lines if l.startswith('| 1 |')]
  assert '-0.405 (n=1: no interval) | – | – | – |' in row
  assert re.search(r'\| n\.s\. \(paper -0\.3\) \|$', row)  # heads=4 of the paper: 25.5


def test_paper_base_row_only_on_table_3_axes():
  group = {'objective': [0.5, 0.6], 'metrics': {}, 'rows': [{'num_params': 10}]}
  groups = {'base': group, 'score=dot': group, 'heads=1': group}
  for axis, name, value, shown in (
      ('score', 'score=dot', 'dot', False),
      ('heads', 'heads=1', 1, True),
  ):
    info = {'base_value': 8 if axis == 'heads' else 'scaled_dot', 'variants': [(name, value)]}
    tests = at.comparisons(groups, ['base', name])
    lines = at.axis_table(axis, info, groups, 'eval/accuracy', False, tests)
    (base,) = [l for l in lines if '(base)' in l]
    assert ('| 4.92 | 25.8 |' in base) == shown


def test_a_categorical_axis_of_numbers_is_ordered_by_them_the_base_among_them():
  """The LM's sizes (labels 'd16xL1'; the variants set d_model, layers): by d_model then layers,
  the base (d64, 3 layers) in its place, whatever the config's order; a compare stage's tuned
  rate is not an axis field. String settings (score functions) keep the config's order."""
  import json  # pylint: disable=g-import-not-at-top

  def size(d, n):
    return {'model.d_model': d, 'model.num_layers': n}

  rate = tune_compare.RATE
  ident = {
      'base': {'model': {'d_model': 64, 'num_layers': 3, 'attention': {'score': 'scaled_dot'}}},
      'variants': json.dumps(
          [
              ['base', {}],
              ['size=d192xL5', {**size(192, 5), rate: 3e-3}],
              ['size=d16xL1', {**size(16, 1), rate: 1e-2}],
              ['size=d128xL4', {**size(128, 4), rate: 1e-3}],
              ['score=dot', {'model.attention.score': 'dot'}],
              ['score=additive', {'model.attention.score': 'additive'}],
          ]
      ),
  }
  infos = at.axes(ident)
  assert [n for n, _ in at.table_order(infos['size'])] == [
      'size=d16xL1',
      'base',
      'size=d128xL4',
      'size=d192xL5',
  ]
  assert infos['size']['keys']['base'] == (64, 3)
  assert [n for n, _ in at.table_order(infos['score'])] == ['base', 'score=dot', 'score=additive']


def test_seed_zero_and_state_counts():
  rows = [{'seed': 3, 'workdir': 'b'}, {'seed': 2, 'workdir': 'a'}, {'seed': None, 'workdir': 'c'}]
  assert ar.seed_zero(rows)['workdir'] == 'a'
  states = [{'state': s} for s in ('COMPLETE', 'FAIL', 'COMPLETE', 'PRUNED', 'COMPLETE')]
  assert results.state_counts(states) == '3 complete, 1 fail, 1 pruned'
  assert results.state_counts([]) == ''


def test_paper_points_of_a_plot_sit_at_the_papers_own_values():
  info = {'base_value': 2, 'variants': [('N=1', 1), ('N=4', 4)]}
  points = at.paper_points('N', info, 'bleu')
  assert sorted((x, v) for x, v, _ in points) == [(2, 23.7), (4, 25.3), (6, 25.8), (8, 25.5)]
  info = {'base_value': 'sinusoidal', 'variants': [('positional=learned', 'learned')]}
  points = at.paper_points('positional', info, 'ppl')
  assert sorted((x, v) for x, v, _ in points) == [('learned', 4.92), ('sinusoidal', 4.92)]
  assert at.paper_points('score', {'base_value': 'x', 'variants': []}, 'bleu') == []
  assert np.isfinite([v for _, v, _ in points]).all()


def test_axis_base_value_ignores_the_rate_a_tune_stage_chose():
  # A tuned compare stage's variants also set learning_rate (listed first here): the axis's base
  # value is still the base's num_heads, so the base sits at x = 8 and paper rows match by value.
  import json  # pylint: disable=g-import-not-at-top

  ident = {
      'base': {'learning_rate': 0.01, 'model': {'num_heads': 8}},
      'variants': json.dumps(
          [
              ['base', {'learning_rate': 0.01}],
              ['heads=1', {'learning_rate': 0.01, 'model.num_heads': 1}],
              ['heads=16', {'learning_rate': 0.003, 'model.num_heads': 16}],
          ]
      ),
  }
  assert at.axes(ident) == {
      'heads': {
          'base_value': 8,
          'variants': [('heads=1', 1), ('heads=16', 16)],
          'keys': {'heads=1': (1,), 'heads=16': (16,), 'base': (8,)},
      }
  }
