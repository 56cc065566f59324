"""A decoder-only Transformer language model on the Multi30k training sentences (en, de, fr).

  python run.py train --config configs/lm_multi30k.py --workdir /tmp/lm
  python run.py eval --workdir /tmp/lm --checkpoint best --split test_2016
  python run.py generate --workdir /tmp/lm "A dog" "Ein Hund" --num_samples 2

`configs/lm_multi30k.py:en` trains on the English sentences only (any comma-separated subset of
en,de,fr works). Needs the Multi30k files in $TRANSFORMER_DATA_DIR/multi30k (or
--config.data.data_dir); `--config.data.corpus=files --config.data.train_files=...` trains on
any plain-text files instead (see experiments/lm/task.py).

Result (measured, seed 0, commit 4ad1324, CPU only):
  TRANSFORMER_DATA_DIR=/work/shared/data nohup taskset -c 1 nice python run.py train \
      --config configs/lm_multi30k.py --workdir /tmp/lm_multi30k_run
  86,995 training sentences (en + de + fr, 5 longer than 64 tokens dropped; 1.62M tokens per
  epoch with the 4,000-piece SentencePiece vocabulary); 800 steps of <= 2,048 padded tokens
  (~0.8 epoch). 1,107,072 parameters (595,072 non-embedding).
                per token                 per byte of UTF-8 text (line end = 1 byte)
  validation    perplexity 35.06 (3.557)  byte perplexity 2.599, 1.378 bits/byte
  test_2016     perplexity 33.65 (3.516)  byte perplexity 2.553, 1.352 bits/byte
  test_2017     perplexity 48.13 (3.874)  byte perplexity 2.916, 1.544 bits/byte
  test_2018     perplexity 50.16 (3.915)  byte perplexity 2.947, 1.559 bits/byte
  (nats per token in brackets; validation perplexity was 44.11 at step 400.) Wall time 28m54s
  (02:52:14 -> 03:21:08, final evaluation and plots included) pinned to one core at nice 10 of
  the 2-core development CPU, with a load average of 18-21 from other jobs: 0.18-0.92 steps/s.
  Validation perplexity was still falling when the cosine schedule ended; more steps is the
  obvious next step (not run).
  python run.py generate --workdir /tmp/lm_multi30k_run --greedy "A dog" "Ein Hund" "Un chien"
    A dog is sitting on a bench.
    Ein Hund springt auf einem Fahrrad.
    Un chien noir et blanc et blanc et blanc et blanc ... (greedy repeats; sample instead)
"""

import ml_collections

from experiments.core import configuration, model_config


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
  config.model.dtype = 'auto'  # bf16 compute on GPUs and TPUs, float32 on CPUs (model_config.py)

  config.generation = ml_collections.ConfigDict()
  config.generation.temperature = 0.8  # 0 = greedy
  config.generation.top_k = 40  # 0 = the whole vocabulary
  config.generation.max_new_tokens = 40
  return config
