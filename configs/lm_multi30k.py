"""A decoder-only Transformer language model on the Multi30k training sentences (en, de, fr).

  python run.py train --config configs/lm_multi30k.py --workdir /tmp/lm
  python run.py eval --workdir /tmp/lm --checkpoint best --split test_2016
  python run.py generate --workdir /tmp/lm "A dog" "Ein Hund" --num_samples 2

`configs/lm_multi30k.py:en` trains on the English sentences only (any comma-separated subset of
en,de,fr works). Needs the Multi30k files in $TRANSFORMER_DATA_DIR/multi30k (or
--config.data.data_dir); `--config.data.corpus=files --config.data.train_files=...` trains on
any plain-text files instead (see experiments/lm/task.py).

Result: not measured yet.
"""

import ml_collections

from experiments import configuration, model_config


def get_config(languages: str = 'en,de,fr') -> ml_collections.ConfigDict:
  config = configuration.base_config()
  config.task = 'lm'
  config.seed = 0
  config.num_train_steps = 800
  config.batch_size = 512  # cap on sentences per batch (the token budget decides)
  config.eval_batch_size = 256

  config.optimizer = 'adamw'
  config.learning_rate = 3e-3
  config.weight_decay = 1e-2
  config.adam_b1 = 0.9
  config.adam_b2 = 0.98
  config.adam_eps = 1e-9
  config.schedule = 'cosine'
  config.warmup_steps = 80
  config.grad_clip_norm = 1.0
  config.label_smoothing = 0.0

  config.log_every_steps = 50
  config.eval_every_steps = 400
  config.checkpoint_every_steps = 200
  config.keep_checkpoints = 2

  config.data = ml_collections.ConfigDict()
  config.data.corpus = 'multi30k'  # 'multi30k' | 'files'
  config.data.languages = languages  # multi30k: comma-separated subset of en,de,fr
  config.data.variant = 'raw'  # multi30k: 'raw' (cased text) | 'tok' (lowercased, tokenized)
  config.data.data_dir = ''  # '' = $TRANSFORMER_DATA_DIR (holding multi30k/)
  config.data.verify_checksums = True  # multi30k files must be the official ones
  config.data.train_files = ''  # corpus='files': comma-separated paths or globs, a line each
  config.data.validation_files = ''
  config.data.test_files = ''
  config.data.vocab_size = 4000  # SentencePiece vocabulary, shared by the languages
  config.data.spm_model_type = 'unigram'
  config.data.character_coverage = 1.0
  config.data.tokens_per_batch = 2048  # padded tokens per training batch
  config.data.length_multiple = 8  # bucket lengths are multiples of this (8 shapes)
  config.data.row_multiple = 8  # rows per batch are multiples of this
  config.data.max_train_len = 64  # longer training sentences (tokens incl. eos) are dropped
  config.data.max_train_examples = 0  # 0 = all (per language)

  config.model = model_config.model_section('lm')  # every LanguageModelConfig field, defaults
  config.model.d_model = 128
  config.model.num_heads = 4
  config.model.num_layers = 3
  config.model.d_ff = 512
  config.model.dropout_rate = 0.1
  config.model.attention.dropout_rate = 0.0
  config.model.max_len = 128
  config.model.positional = 'sinusoidal'  # 'sinusoidal' | 'learned' | 'rope' | 'none'
  config.model.attention.score = 'scaled_dot'
  config.model.attention.weighting = 'soft'
  config.model.norm = 'pre'
  config.model.tie_output_embedding = True
  config.model.dtype = 'float32'

  config.generation = ml_collections.ConfigDict()
  config.generation.temperature = 0.8  # 0 = greedy
  config.generation.top_k = 40  # 0 = the whole vocabulary
  config.generation.max_new_tokens = 40
  return config
