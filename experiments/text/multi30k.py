"""TFDS builder for Multi30k (WMT multimodal Task 1) read from local gz files.

The data cannot be downloaded here, so the builder uses TFDS's manual-download
mechanism: `dl_manager.manual_dir` must hold the raw files (`train.en.gz`, `val.de.gz`,
`test_2016_flickr.fr.gz`, ...) and, for the `tok` variant, `tok/*.lc.norm.tok.*.gz`.
`prepare_multi30k` points the manual dir at `$TRANSFORMER_DATA_DIR/multi30k` (or an
explicit folder) and builds the dataset.

Builder configs are named `SRC-TGT-VARIANT`, e.g. `en-de-raw` (the default), `de-en-tok`,
`fr-en-raw`: any ordered pair of {en, de, fr} times {raw, tok}. Features are
`{SRC: Text, TGT: Text, 'line': int32}` with `supervised_keys=(SRC, TGT)`; TFDS stores
examples in its own order, `line` gives back the order of the files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

LANGUAGES = ('en', 'de', 'fr')
VARIANTS = ('raw', 'tok')
# TFDS split name -> file stem in the Multi30k repository.
SPLIT_FILES = {
    'train': 'train',
    'validation': 'val',
    'test_2016': 'test_2016_flickr',
    'test_2017': 'test_2017_flickr',
    'test_2018': 'test_2018_flickr',
}
# Official sizes (sentence pairs), identical for every language pair and variant.
SPLIT_SIZES = {
    'train': 29000,
    'validation': 1014,
    'test_2016': 1000,
    'test_2017': 1000,
    'test_2018': 1071,
}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put the Multi30k Task 1 files of https://github.com/multi30k/dataset (data/task1/raw/ and,
for the `tok` variant, data/task1/tok/) gzip-compressed in one folder:
  train.{en,de,fr}.gz  val.{en,de,fr}.gz  test_{2016,2017,2018}_flickr.{en,de,fr}.gz
  tok/{train,val,test_2016_flickr,test_2017_flickr,test_2018_flickr}.lc.norm.tok.{en,de,fr}.gz
and point $TRANSFORMER_DATA_DIR at its parent (the folder must be named `multi30k`), or
pass it as the config field `data.source_dir` / `prepare_multi30k(source_dir=...)`.
"""

# SHA-256 of the official files (multi30k/dataset@a3d2e0d2, gzip -n -9), checked when
# `verify_checksums=True` (the default).
KNOWN_SHA256 = {
    'test_2016_flickr.de.gz': '9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8',
    'test_2016_flickr.en.gz': '611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9',
    'test_2016_flickr.fr.gz': '6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90',
    'test_2017_flickr.de.gz': 'a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee',
    'test_2017_flickr.en.gz': '76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074',
    'test_2017_flickr.fr.gz': '3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496',
    'test_2018_flickr.de.gz': 'ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608',
    'test_2018_flickr.en.gz': 'ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d',
    'test_2018_flickr.fr.gz': 'fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501',
    'train.de.gz': '726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6',
    'train.en.gz': 'd79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f',
    'train.fr.gz': '622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c',
    'val.de.gz': 'f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a',
    'val.en.gz': '14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28',
    'val.fr.gz': 'ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9',
    'tok/test_2016_flickr.lc.norm.tok.de.gz': '2628844bbb7783afa0ba8a9927f174aafeee715871aa8deed3af2c4d0b71a658',
    'tok/test_2016_flickr.lc.norm.tok.en.gz': 'b95df925929cb222d0cf733f153bcbfba0f00180c85fd61dd5c4fb27f29ee394',
    'tok/test_2016_flickr.lc.norm.tok.fr.gz': '97b9b377d15dfc98e55e270dda3d6c91f8df02a5cf9e682457f6c59bd6be00db',
    'tok/test_2017_flickr.lc.norm.tok.de.gz': 'aa48934689a0fac1f506d19878ef9f48d823b2f1655bd3db5018f533cc0b2111',
    'tok/test_2017_flickr.lc.norm.tok.en.gz': '6f015edf8eea8e5bff43d65e1743b2572577756b671a203651ccce508e787c35',
    'tok/test_2017_flickr.lc.norm.tok.fr.gz': 'd9905df4ff42d30afbf2affdfe4ebfc3700d3b468f56746e69c3a0f8a1d0ddc1',
    'tok/test_2018_flickr.lc.norm.tok.de.gz': '87b950eb1b484c97882d29e1ffceec68568d6a4b2bf72b1e7f9cdd62e3e37e90',
    'tok/test_2018_flickr.lc.norm.tok.en.gz': '6942a488ee2f67a37c7a838ac456addc402a1ba61448c4da317b1bacc9b648eb',
    'tok/test_2018_flickr.lc.norm.tok.fr.gz': '6f33d23fcc44cc3f7ec2b5058e0dcc0b0efc14de01082a37175488073f185eee',
    'tok/train.lc.norm.tok.de.gz': '7e3392f03c0fe978165d22fb5eaf0d0b9b1d9c413283b5193f02d4cb27e50797',
    'tok/train.lc.norm.tok.en.gz': '79d990dd71713faec0e3165cbd3b60acdf6fe11cab2e37a28f374c6bdbb297ec',
    'tok/train.lc.norm.tok.fr.gz': '10438b7694a52af6164448c31198e9453b59a0d3b8a6715428722f0f8fbba2c0',
    'tok/val.lc.norm.tok.de.gz': '006ad58fd6a2ad6502094160fe5273d93abf34a207967fdc69eafd7558b5ef39',
    'tok/val.lc.norm.tok.en.gz': '2c7e5e9cf54ba0dff0cc4b84836d5a583f80ecaaab90b37a123d1376306215cd',
    'tok/val.lc.norm.tok.fr.gz': '78b89a01ca96bb9940c525ad5eb73c0028d3e5bfd90008886a22961afb8e8994',
}


def relative_path(split: str, lang: str, variant: str) -> str:
  """Path of a split's file inside the Multi30k folder, e.g. 'tok/val.lc.norm.tok.de.gz'."""
  stem = SPLIT_FILES[split]
  if variant == 'tok':
    return f'tok/{stem}.lc.norm.tok.{lang}.gz'
  return f'{stem}.{lang}.gz'


@dataclasses.dataclass
class Multi30kConfig(tfds.core.BuilderConfig):
  """A translation direction and a text variant ('raw' or 'tok')."""

  source: str = 'en'
  target: str = 'de'
  variant: str = 'raw'


def config_name(source: str, target: str, variant: str) -> str:
  return f'{source}-{target}-{variant}'


# 1.1.0: the same examples in ArrayRecord files (1.0.0 was TFRecord, readable only through
# TensorFlow); a folder prepared as 1.0.0 is left as it is and 1.1.0 is prepared beside it.
VERSION = tfds.core.Version('1.1.0')


def _make_configs() -> list[Multi30kConfig]:
  pairs = [('en', 'de')] + [p for p in itertools.permutations(LANGUAGES, 2) if p != ('en', 'de')]
  return [
      Multi30kConfig(
          name=config_name(s, t, v),
          source=s,
          target=t,
          variant=v,
          version=VERSION,
          description=f'Multi30k Task 1, {s} -> {t}, {v} text.',
      )
      for (s, t) in pairs
      for v in VARIANTS
  ]


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def read_lines(path: str) -> list[str]:
  """Lines of a gzip UTF-8 file without their trailing newline."""
  with gzip.open(path, 'rt', encoding='utf-8', newline='\n') as f:
    return [line[:-1] if line.endswith('\n') else line for line in f]


class Multi30k(tfds.core.GeneratorBasedBuilder):
  """Multi30k Task 1 parallel sentences (Flickr30K image descriptions), en/de/fr."""

  VERSION = VERSION
  RELEASE_NOTES = {
      '1.0.0': 'Raw and lowercased-tokenized text, all en/de/fr directions.',
      '1.1.0': 'Stored as ArrayRecord: random access without TensorFlow.',
  }
  BUILDER_CONFIGS = _make_configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """This file. (TFDS's default lookup goes through importlib.resources of the top-level
    package, which fails for namespace-package installs.)"""
    return epath.Path(__file__)

  def __init__(self, *, verify_checksums: bool = True, **kwargs):
    """`verify_checksums=False` accepts files that are not the official ones (tests)."""
    self._verify_checksums = verify_checksums
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description='Multi30k Task 1 (Flickr30K image descriptions): parallel en/de/fr sentences.',
        features=tfds.features.FeaturesDict(
            {
                cfg.source: tfds.features.Text(),
                cfg.target: tfds.features.Text(),
                'line': tfds.features.Scalar(np.int32, doc='0-based line number in the files'),
            }
        ),
        supervised_keys=(cfg.source, cfg.target),
        homepage='https://github.com/multi30k/dataset',
        citation="""@inproceedings{elliott-etal-2016-multi30k,
  title={Multi30K: Multilingual English-German Image Descriptions},
  author={Elliott, Desmond and Frank, Stella and Sima'an, Khalil and Specia, Lucia},
  booktitle={Proceedings of the 5th Workshop on Vision and Language}, pages={70--74}, year={2016}}""",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    cfg = self.builder_config
    root = os.fspath(dl_manager.manual_dir)
    generators = {}
    for split in SPLIT_FILES:
      paths = {}
      for lang in (cfg.source, cfg.target):
        rel = relative_path(split, lang, cfg.variant)
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
          raise FileNotFoundError(
              f'Multi30k: missing file {path} (config {cfg.name}).\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
          )
        if self._verify_checksums:
          actual = file_sha256(path)
          if actual != KNOWN_SHA256[rel]:
            raise ValueError(
                f'Multi30k: checksum mismatch for {path}: sha256 {actual}, expected '
                f'{KNOWN_SHA256[rel]} (the official file). Replace the file, or build with '
                f'verify_checksums=False if it is deliberately different.'
            )
        paths[lang] = path
      generators[split] = self._generate_examples(paths)
    return generators

  def _generate_examples(self, paths: dict[str, str]):
    cfg = self.builder_config
    src, tgt = read_lines(paths[cfg.source]), read_lines(paths[cfg.target])
    if len(src) != len(tgt):
      raise ValueError(
          f'Multi30k: {paths[cfg.source]} has {len(src)} lines but '
          f'{paths[cfg.target]} has {len(tgt)}; the files must be line-aligned.'
      )
    for i, (s, t) in enumerate(zip(src, tgt)):
      yield i, {cfg.source: s, cfg.target: t, 'line': i}


def default_source_dir() -> str | None:
  """`$TRANSFORMER_DATA_DIR/multi30k`, or None when the variable is unset."""
  root = os.environ.get('TRANSFORMER_DATA_DIR')
  return os.path.join(root, 'multi30k') if root else None


def prepare_multi30k(
    source: str = 'en',
    target: str = 'de',
    variant: str = 'raw',
    *,
    source_dir: str | None = None,
    data_dir: str | None = None,
    verify_checksums: bool = True,
) -> Multi30k:
  """Builds (once) and returns the Multi30k builder for `source`->`target`, `variant`.

  source_dir: folder with the gz files (default `$TRANSFORMER_DATA_DIR/multi30k`).
  data_dir: where TFDS writes the prepared dataset (default: TFDS's default data dir).
  """
  for name, lang in (('source', source), ('target', target)):
    if lang not in LANGUAGES:
      raise ValueError(f'Multi30k: unknown {name} language {lang!r}; choose from {LANGUAGES}.')
  if source == target:
    raise ValueError(f'Multi30k: source and target language are both {source!r}.')
  if variant not in VARIANTS:
    raise ValueError(f'Multi30k: unknown variant {variant!r}; choose from {VARIANTS}.')
  builder = Multi30k(
      config=config_name(source, target, variant),
      data_dir=data_dir,
      file_format='array_record',
      verify_checksums=verify_checksums,
  )
  if not builder.is_prepared():
    source_dir = source_dir or default_source_dir()
    if not source_dir:
      raise FileNotFoundError(
          'Multi30k: no source folder; set $TRANSFORMER_DATA_DIR (holding multi30k/) or the '
          f'config field data.source_dir.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    if not os.path.isdir(source_dir):
      raise FileNotFoundError(
          f'Multi30k: source folder {source_dir} does not exist.\n'
          f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=source_dir)
    )
  return builder
