"""The README's library tour runs as written (its ```python blocks, in order, in one namespace)."""

import os
import re


def test_readme_python_blocks_run(tmp_path, monkeypatch):
  readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
  with open(readme, encoding="utf-8") as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  assert len(blocks) >= 3, "the README should show the library API in python blocks"
  monkeypatch.chdir(tmp_path)  # plots land here
  namespace: dict = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
  assert (tmp_path / "cross_attention.png").stat().st_size > 1000
  assert namespace["weights"].shape == (2, 4, 5, 7)
