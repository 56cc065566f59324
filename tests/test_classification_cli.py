"""experiments/classification/cli.py: image files -> model inputs."""

import numpy as np
import pytest
from PIL import Image

from experiments.classification.cli import load_image


def test_grayscale_rgb_rgba_any_size(tmp_path):
  digit = np.zeros((40, 30), np.uint8)
  digit[10:30, 12:18] = 255  # a bright bar on black
  Image.fromarray(digit).save(tmp_path / 'g.png')
  Image.fromarray(digit).convert('RGB').save(tmp_path / 'rgb.jpg', quality=95)
  rgba = np.zeros((40, 30, 4), np.uint8)
  rgba[..., 3] = 0  # transparent background -> white paper...
  rgba[10:30, 12:18] = (0, 0, 0, 255)  # ...with a black stroke
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
  g = load_image(str(tmp_path / 'g.png'), (8, 8), 1, 'auto')
  assert g.shape == (8, 8, 1) and g.dtype == np.float32 and 0 <= g.min() <= g.max() <= 1
  rgb = load_image(str(tmp_path / 'rgb.jpg'), (8, 8), 1, 'auto')
  np.testing.assert_allclose(rgb, g, atol=0.05)
  inverted = load_image(str(tmp_path / 'a.png'), (8, 8), 1, 'auto')  # dark on light -> inverted
  np.testing.assert_allclose(inverted, g, atol=0.05)
  assert load_image(str(tmp_path / 'g.png'), (28, 28), 3, 'no').shape == (28, 28, 3)


def test_box_downsampling_averages_pixels(tmp_path):
  image = np.zeros((16, 16), np.uint8)
  image[:8, :8] = 255
  Image.fromarray(image).save(tmp_path / 'q.png')
  x = load_image(str(tmp_path / 'q.png'), (2, 2), 1, 'no')[..., 0]
  np.testing.assert_allclose(x, [[1, 0], [0, 0]])
  np.testing.assert_allclose(
      load_image(str(tmp_path / 'q.png'), (2, 2), 1, 'yes')[..., 0], [[0, 1], [1, 1]]
  )


def test_not_an_image(tmp_path):
  (tmp_path / 'x.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  with pytest.raises(ValueError, match='not a readable image'):
    load_image(str(tmp_path / 'x.png'), (8, 8), 1, 'auto')
  with pytest.raises(ValueError, match='not a readable image'):
    load_image(str(tmp_path / 'missing.png'), (8, 8), 1, 'auto')
