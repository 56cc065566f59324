"""experiments/classification/plots.py: attention rollout against a NumPy loop."""

import numpy as np

from experiments.classification import plots


def _random_attention(rng, b, h, n):
  w = rng.random((b, h, n, n))
  return w / w.sum(-1, keepdims=True)


def test_rollout_matches_loop():
  rng = np.random.default_rng(0)
  layers = [_random_attention(rng, 2, 3, 5) for _ in range(3)]
  got = plots.attention_rollout(layers)
  for b in range(2):
    expected = np.eye(5)
    for w in layers:  # R <- Â_l R, Â_l = normalise((mean_heads A_l + I) / 2)
      a = np.zeros((5, 5))
      for h in range(3):
        a += w[b, h] / 3
      a = 0.5 * a + 0.5 * np.eye(5)
      for i in range(5):
        a[i] /= a[i].sum()
      expected = a @ expected
    np.testing.assert_allclose(got[b], expected, rtol=1e-12)
  np.testing.assert_allclose(got.sum(-1), 1.0)  # rows stay distributions


def test_cls_patch_attention_shapes_and_normalisation():
  rng = np.random.default_rng(1)
  layers = [_random_attention(rng, 2, 2, 1 + 4) for _ in range(2)]
  cls = plots.cls_patch_attention(layers, (2, 2), cls_token=True)
  rollout = plots.attention_rollout(layers)
  np.testing.assert_allclose(
      cls.reshape(2, 4), rollout[:, 0, 1:] / rollout[:, 0, 1:].sum(-1, keepdims=True)
  )
  mean = plots.cls_patch_attention([_random_attention(rng, 2, 2, 4)], (2, 2), cls_token=False)
  assert mean.shape == (2, 2, 2) and np.allclose(mean.sum((1, 2)), 1.0)


def test_attention_weights_are_found_in_layer_order():
  """Unrolled layers in any key order (layer_10 after layer_2), and the scanned layout."""
  n = 11
  w = {i: np.full((1, 1, 2, 2), float(i)) for i in range(n)}
  unrolled = {
      'encoder': {
          f'layer_{i}': {'self_attention': {'attention_weights': (w[i],)}}
          for i in sorted(range(n), key=str)
      }
  }
  stacked = np.stack([w[i] for i in range(n)])  # [layers, b, h, q, k]
  scanned = {'encoder': {'layers': {'self_attention': {'attention_weights': (stacked,)}}}}
  for intermediates in (unrolled, scanned):
    found = plots.attention_weights(intermediates)
    assert [float(x[0, 0, 0, 0]) for x in found] == [float(i) for i in range(n)]


def test_plot_writes_png(tmp_path):
  rng = np.random.default_rng(2)
  layers = [_random_attention(rng, 3, 2, 17)]
  path = plots.plot_cls_attention(
      rng.random((3, 8, 8, 1)),
      layers,
      patch_size=2,
      cls_token=True,
      titles=['a', 'b', 'c'],
      path=str(tmp_path / 'a.png'),
  )
  assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_overlay_is_on_the_patch_the_cls_token_attends_to():
  """The heat map shares the image's pixel grid: attending only to patch (row 1, col 2) of a
  3x4 grid of 2x2 patches lights up pixels [2:4, 4:6] and nothing else."""
  b, h, w, p = 2, 6, 8, 2
  n = 1 + (h // p) * (w // p)
  weights = np.zeros((b, 1, n, n), np.float32)
  weights[:, :, :, 0] = 1.0  # every token attends to [CLS] ...
  weights[:, :, 0, 0] = 0.0
  target = 1 + 1 * (w // p) + 2  # ... and [CLS] only to patch (1, 2)
  weights[:, :, 0, target] = 1.0
  images = np.random.default_rng(3).random((b, h, w, 1))
  fig = plots.cls_attention_figure(
      images, [weights], patch_size=p, cls_token=True, titles=['a', 'b']
  )
  try:
    fig.canvas.draw()
    for i in range(b):  # the overlay row never covers the image row (the old tight_layout bug)
      top, bottom = fig.axes[i].get_window_extent(), fig.axes[b + i].get_window_extent()
      assert top.y0 > bottom.y1, (top, bottom)
    for i in range(b):
      image_layer, heat_layer = fig.axes[b + i].get_images()
      assert image_layer.get_extent() == heat_layer.get_extent() == [0, w, h, 0]
      heat = np.asarray(heat_layer.get_array())
      assert heat.shape == (h, w)
      expected = np.zeros((h, w))
      expected[2:4, 4:6] = 1.0
      np.testing.assert_allclose(heat, expected, atol=1e-6)
      np.testing.assert_allclose(np.asarray(image_layer.get_array()), images[i, ..., 0])
      assert fig.axes[i].get_images()[0].get_extent() == [0, w, h, 0]
  finally:
    plots.plt.close(fig)


def test_overlay_of_a_padded_grid_is_cut_at_the_image_border():
  """A 5x7 image in 2x2 patches of the padded conv stem: a 3x4 grid whose last row and column
  stick out; attention on patch (2, 3) lights only the one pixel (4, 6) inside the image."""
  assert plots.patch_grid((5, 7), 2) == (3, 4)
  attn = np.zeros((3, 4))
  attn[2, 3] = 1.0
  heat = plots.patch_heat(attn, 2, (5, 7))
  expected = np.zeros((5, 7))
  expected[4, 6] = 1.0
  np.testing.assert_array_equal(heat, expected)
  attn = np.arange(12.0).reshape(3, 4)
  heat = plots.patch_heat(attn, 2, (5, 7))
  for y in range(5):
    for x in range(7):
      assert heat[y, x] == attn[y // 2, x // 2]
