"""plot_attention writes a real PNG of the right kind."""

import numpy as np
import pytest
from PIL import Image

from transformer.plotting import plot_attention


def test_plot_single_and_per_head(tmp_path):
  w = np.random.default_rng(0).dirichlet(np.ones(4), size=3)  # [q=3, k=4]
  p1 = plot_attention(
      w, ["a", "dog", "runs", "."], ["ein", "hund", "läuft"], str(tmp_path / "one.png"), title="t"
  )
  with Image.open(p1) as im:
    assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
  p2 = plot_attention(
      np.stack([w, w[::-1]]), list("abcd"), list("xyz"), str(tmp_path / "sub" / "heads.png")
  )
  with Image.open(p2) as im:
    assert im.format == "PNG"


def test_plot_label_mismatch_is_an_error(tmp_path):
  with pytest.raises(ValueError, match=r"2 y tokens and 4 x tokens"):
    plot_attention(np.ones((3, 4)) / 4, list("abcd"), list("xy"), str(tmp_path / "x.png"))
  assert not (tmp_path / "x.png").exists()
