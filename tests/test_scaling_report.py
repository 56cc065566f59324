"""The scaling section of an ablation report (experiments/analysis/scaling_report.py) on fake runs
whose best validation nll follows a known law."""

from __future__ import annotations

import json
import os

from experiments.analysis import scaling_report as sr


def _size_runs(tmp_path, sizes, law, seeds=2):
  """Fake runs (`seeds` per size) whose best validation nll is law(n), seed s 0.01 s higher; each
  logs its size as a run does when it starts (experiments/core/model_size.py)."""
  groups = {}
  for name, n in sizes.items():
    rows = []
    for seed in range(seeds):
      workdir = tmp_path / f'{name}_{seed}'
      workdir.mkdir()
      loss = law(n) + 0.01 * seed
      lines = [
          {'step': 0, 'params/total': n + 500, 'params/non_embedding': n},
          {'step': 5, 'eval/nll': loss + 1},
          {'step': 10, 'eval/nll': loss},
      ]
      (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
      rows.append({'workdir': str(workdir)})
    groups[name] = {'rows': rows}
  return groups


def _cells(line: str) -> list[str]:
  return [c.strip() for c in line.strip('|').split('|')]


def test_scaling_section_fits_both_forms_and_predicts_the_largest(tmp_path):
  """Runs of 5 sizes whose best validation nll follows L = 2 + 50 N^-0.5 (+ 0.01 for seed 1):
  the saturating fit recovers the law, and predicts the largest size from the others."""
  sizes = {'base': 1_000, 'size=b': 4_000, 'size=c': 16_000, 'size=d': 64_000, 'size=e': 256_000}
  law = lambda n: 2 + 50 * n**-0.5
  groups = _size_runs(tmp_path, sizes, law)
  # A size whose run logged no parameter counts and kept no checkpoint: left out, and said so.
  unsized = tmp_path / 'unsized'
  unsized.mkdir()
  (unsized / 'metrics.jsonl').write_text(json.dumps({'step': 10, 'eval/nll': 1.0}) + '\n')
  groups['size=x'] = {'rows': [{'workdir': str(unsized)}]}
  lines, plots = sr.scaling_section(
      [*sizes, 'size=x'], groups, 'lm', str(tmp_path / 'fit.png'), num_bootstrap=10
  )
  text = '\n'.join(lines)
  assert '| size=d | 64,000 | 64,500 | 2 |' in text
  assert 'no checkpoint is here): size=x.' in text and '| size=x |' not in text
  assert '5 sizes spanning 2.41 decades' in text
  (fit,) = [l for l in lines if l.startswith('| non_embedding | saturating | L = ')]
  law_cell = _cells(fit)[2]  # 'L = E + A N^-alpha'
  e, rest = law_cell.removeprefix('L = ').split(' + ')
  a, alpha = rest.split(' N^-')
  assert abs(float(e) - 2.005) < 0.05 and abs(float(alpha) - 0.5) < 0.05
  assert abs(float(a) - 50) < 5
  (kaplan,) = [l for l in lines if l.startswith('| non_embedding | kaplan | L = ')]
  assert 0 < float(_cells(kaplan)[3].split()[0]) < 0.5
  (held,) = [l for l in lines if l.startswith('| non_embedding | saturating | 256,000 |')]
  measured = law(256_000) + 0.005  # the mean of the two seeds
  assert f'{measured:.4f} (n = 2)' in held
  error = float(_cells(held)[5].rstrip('%'))
  assert abs(error) < 0.5  # percent: the smaller sizes follow the same law exactly
  assert os.path.getsize(plots[0]) > 1000


def test_scaling_section_skips_the_fit_when_the_loss_rises_with_size(tmp_path):
  """Table 3 (C)-like runs: the largest model is worse than the base beyond the seed spread
  (undertrained), so no power law with alpha > 0 fits; a rise within the spread is noise."""
  sizes = {'base': 1_000, 'size=b': 4_000, 'size=c': 16_000, 'size=d': 64_000}
  losses = {1_000: 3.0, 4_000: 2.8, 16_000: 2.805, 64_000: 3.1}  # 2.805: within the 0.007 std
  groups = _size_runs(tmp_path, sizes, losses.get)
  lines, plots = sr.scaling_section(
      list(sizes), groups, 'lm', str(tmp_path / 'fit.png'), num_bootstrap=10
  )
  text = '\n'.join(lines)
  assert plots == [] and '| non_embedding |' not in text
  assert 'No power-law fit: the mean loss does not fall with size' in text
  assert '2.81 at 16,000 non-embedding parameters, 3.105 at 64,000' in text


def test_a_run_logs_its_size_so_a_report_needs_no_checkpoint(trained_workdir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir, _ = trained_workdir
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    history = [json.loads(line) for line in f]
  (logged,) = [h for h in history if 'params/total' in h]
  assert logged['step'] == 0
  # Counted here from the checkpoint's arrays: every parameter, and those outside embeddings.
  params = loop.restore_for_inference(workdir, 'latest').state.params
  leaves = jax.tree_util.tree_leaves_with_path(params)
  total = sum(int(np.size(x)) for _, x in leaves)
  non_embedding = sum(int(np.size(x)) for p, x in leaves if 'embed' not in jax.tree_util.keystr(p))
  assert 0 < non_embedding < total  # the digits model has an embedding
  assert (logged['params/total'], logged['params/non_embedding']) == (total, non_embedding)
  # A run dir carried to another machine without its checkpoints still has its size.
  carried = str(tmp_path / 'carried')
  shutil.copytree(workdir, carried, ignore=shutil.ignore_patterns('checkpoints'))
  assert sr.parameter_counts(carried) == {'total': total, 'non_embedding': non_embedding}
  # A run older than the log: counted from its latest checkpoint.
  older = str(tmp_path / 'older')
  shutil.copytree(workdir, older)
  with open(os.path.join(older, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(h) + '\n' for h in history if 'params/total' not in h)
  assert sr.parameter_counts(older) == {'total': total, 'non_embedding': non_embedding}
