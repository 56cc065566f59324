"""The project's import structure, read from the source with `ast` (nothing is imported).

The graph has one node per module of the project packages (`PACKAGES`) and an edge for every
import of another project module, at module level or inside a function (an import moved into a
function to dodge a circle is still an edge). Checked:

* no import circles, except the ones listed in `KNOWN_CYCLES` (which must still exist: a circle
  that is gone leaves the list);
* no forbidden dependency (`FORBIDDEN`: importer prefix -> imported prefix, e.g. the library
  never imports the experiments);
* no private name (`_x`) of a transformer/ or experiments/ module used from another module,
  by `from transformer.m import _x` or `m._x` on an imported module, anywhere in the
  repository's Python code (tests included: a helper worth testing on its own is public).

A new rule (e.g. no task imports another task) is one more entry in `FORBIDDEN`.
"""

from __future__ import annotations

import ast
import dataclasses
import os

import pytest

from conftest import REPO_ROOT

PACKAGES = ('transformer', 'experiments')
# Every Python file whose use of the packages' private names is checked.
SOURCE_DIRS = ('transformer', 'experiments', 'benchmarks', 'tests', 'configs')


@dataclasses.dataclass(frozen=True)
class Forbidden:
  importer: str  # module prefix, e.g. 'transformer'
  imported: str  # module prefix it must not import
  why: str


TASKS = ('experiments.classification', 'experiments.translation', 'experiments.lm')

FORBIDDEN = [
    Forbidden('transformer', 'experiments', 'the library never depends on the experiments'),
    *(
        Forbidden(a, b, 'no task imports another task (shared text code is experiments.text)')
        for a in TASKS
        for b in TASKS
        if a != b
    ),
    *(
        Forbidden('experiments.text', task, 'the shared text code imports no task')
        for task in TASKS
    ),
    *(
        Forbidden('experiments.core', upper, 'the core names tasks and verbs only as strings')
        for upper in (
            *TASKS,
            'experiments.text',
            'experiments.sweep',
            'experiments.analysis',
            'experiments.verbs',
            'experiments.doctor',
        )
    ),
]

# Import circles allowed for now, as sets of modules: none (issue 20 removed report <->
# ablation_report and sweep cli <-> launcher). Function-level imports are edges too, so moving an
# import into a function does not hide a circle.
KNOWN_CYCLES: list[frozenset[str]] = []


def _python_files(top: str):
  for directory, dirs, files in os.walk(os.path.join(REPO_ROOT, top)):
    dirs[:] = [d for d in dirs if d not in ('__pycache__', 'data')]
    for name in sorted(files):
      if name.endswith('.py'):
        yield os.path.join(directory, name)


def _module_name(path: str) -> str:
  name = os.path.relpath(path, REPO_ROOT)[: -len('.py')].replace(os.sep, '.')
  return name[: -len('.__init__')] if name.endswith('.__init__') else name


MODULES = {_module_name(path): path for package in PACKAGES for path in _python_files(package)}


def _parse(path: str) -> ast.Module:
  with open(path, encoding='utf-8') as f:
    return ast.parse(f.read(), filename=path)


def _imported_modules(name: str, tree: ast.Module) -> list[tuple[str, list[str]]]:
  """(module, names imported from it) for every import statement anywhere in the module,
  relative imports resolved; `from pkg import mod` counts as an import of pkg.mod."""
  package = name if MODULES.get(name, '').endswith('__init__.py') else name.rpartition('.')[0]
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(alias.name, []) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parts = package.split('.')[: len(package.split('.')) - (node.level - 1)]
        base = '.'.join(parts + ([base] if base else []))
      for alias in node.names:
        sub = f'{base}.{alias.name}'
        out.append((sub, []) if sub in MODULES else (base, [alias.name]))
  return out


def _graph() -> dict[str, set[str]]:
  graph = {}
  for name, path in MODULES.items():
    imported = {m for m, _ in _imported_modules(name, _parse(path))}
    graph[name] = {m for m in imported if m in MODULES and m != name}
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(frozenset(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_the_graph_sees_the_project():
  graph = _graph()
  assert {'transformer.attention', 'experiments.core.trainer'} <= set(graph)
  assert 'transformer.attention_config' in graph['transformer.attention']
  assert 'transformer.models' in graph['transformer']  # transformer/__init__.py
  assert (
      'experiments.core.optim' in graph['experiments.core.loop']
  )  # `from experiments.core import optim`


def test_no_import_circles_but_the_known_ones():
  cycles = _cycles(_graph())
  new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
  gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
  assert not new, f'import circles: {new}'
  assert not gone, f'these circles are gone: remove them from KNOWN_CYCLES: {gone}'


def test_a_circle_is_found():
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
  assert _cycles(graph) == [frozenset({'a', 'b', 'c'})]


def _within(module: str, prefix: str) -> bool:
  return module == prefix or module.startswith(prefix + '.')


@pytest.mark.parametrize('rule', FORBIDDEN, ids=lambda r: f'{r.importer}-x->{r.imported}')
def test_forbidden_dependencies(rule):
  graph = _graph()
  assert any(_within(m, rule.importer) for m in graph), f'no module under {rule.importer}'
  bad = sorted(
      f'{m} imports {i}'
      for m, imported in graph.items()
      if _within(m, rule.importer)
      for i in imported
      if _within(i, rule.imported)
  )
  assert not bad, f'{rule.why}: {bad}'


def _private_uses(path: str, package: str = 'transformer') -> list[str]:
  """Private names of `package`'s modules that the file at `path` uses."""
  name = _module_name(path)
  tree = _parse(path)
  bad, aliases = [], {}  # alias -> transformer module bound to it
  for module, names in _imported_modules(name, tree):
    if _within(module, package) and module != name:
      bad += [f'from {module} import {n}' for n in names if n.startswith('_')]
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and _within(node.module, package):
      for alias in node.names:
        if f'{node.module}.{alias.name}' in MODULES:
          aliases[alias.asname or alias.name] = f'{node.module}.{alias.name}'
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.asname and _within(alias.name, package):
          aliases[alias.asname] = alias.name
  for node in ast.walk(tree):
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith('_')
        and not node.attr.startswith('__')
        and aliases[node.value.id] != name
    ):
      bad.append(f'{aliases[node.value.id]}.{node.attr}')
  return bad


@pytest.mark.parametrize('package', PACKAGES)
def test_no_private_name_of_a_package_is_used_across_modules(package):
  bad = {}
  for top in SOURCE_DIRS:
    for path in _python_files(top):
      uses = _private_uses(path, package)
      if uses:
        bad[os.path.relpath(path, REPO_ROOT)] = uses
  assert not bad, f'private names of {package}/ used across modules: {bad}'


def test_a_private_import_is_found(tmp_path, monkeypatch):
  path = tmp_path / 'probe.py'
  path.write_text(
      'from transformer.decoding import _force_eos\n'
      'from transformer import decoding\n'
      'decoding._force_eos\n'
  )
  monkeypatch.setattr('test_structure.REPO_ROOT', str(tmp_path))
  assert _private_uses(str(path)) == [
      'from transformer.decoding import _force_eos',
      'transformer.decoding._force_eos',
  ]
