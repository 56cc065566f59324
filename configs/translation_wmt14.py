"""WMT14 English->German, the paper's base Transformer (Vaswani et al. 2017), for accelerators.

  python run.py train --config configs/translation_wmt14.py --workdir /tmp/wmt14
  python run.py eval --workdir /tmp/wmt14 --checkpoint best --split test     # newstest2014
  python run.py translate --workdir /tmp/wmt14 "A dog runs in the park."

Data: TFDS `wmt14_translate/de-en`, prepared by TFDS in the ArrayRecord format where there is
network (set --config.data.tfds_data_dir to where it is kept) and read by random access through
`tfds.data_source` in a Grain pipeline (experiments/translation/grain_pipeline.py): the 4.5M
training pairs are never held in Python lists; each process reads only its rows of each batch.
The direction is en->de here; use --config.data.source_lang=de --config.data.target_lang=en for
the other way.
Model: 6+6 layers, d_model 512, 8 heads, FFN 2048, dropout 0.1, label smoothing 0.1,
~25k source + 25k target tokens per batch, Adam(0.9, 0.98, 1e-9) with the paper's
inverse-square-root ("noam") schedule, 4000 warmup steps, 100k steps; beam 4, alpha 0.6.
BLEU is detokenized sacreBLEU on newstest2014 (not the paper's tokenized BLEU).

Result: not run in this project yet (needs an accelerator and the WMT14 download).
"""

import ml_collections

from experiments.core import configuration, model_config


def get_config() -> ml_collections.ConfigDict:
  config = configuration.base_config()
  config.task = 'translation'
  config.seed = 0
  config.num_train_steps = 100_000
  config.batch_size = 4096  # cap on sentences per batch (the token budget decides)
  config.eval_batch_size = 256

  config.optimizer = 'adam'
  config.learning_rate = 1.0  # noam: lr = 1.0 * d_model^-0.5 * min(n^-0.5, n * warmup^-1.5)
  config.adam_b1 = 0.9
  config.adam_b2 = 0.98
  config.adam_eps = 1e-9
  config.weight_decay = 0.0
  config.schedule = 'noam'
  config.warmup_steps = 4000
  config.grad_clip_norm = 0.0
  config.label_smoothing = 0.1

  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'wmt14'
  config.data.source_lang = 'en'
  config.data.target_lang = 'de'
  config.data.variant = 'raw'
  config.data.data_dir = ''
  config.data.tfds_data_dir = ''  # '' = TFDS default (~/tensorflow_datasets)
  config.data.verify_checksums = True  # (Multi30k only)
  config.data.vocab_size = 32000  # shared SentencePiece vocabulary (paper: 37k BPE)
  config.data.shared_vocab = True
  config.data.spm_model_type = 'unigram'
  config.data.character_coverage = 1.0
  config.data.tokens_per_batch = 25_000
  config.data.length_multiple = 16
  config.data.row_multiple = 16
  config.data.max_train_len = 256
  config.data.max_train_examples = 0  # 0 = all ~4.5M pairs
  config.data.num_workers = 8  # Grain worker processes that read, tokenize and batch

  # Every model field at its default (transformer.models), then what this experiment changes.
  config.model = model_config.model_section('translation')
  config.model.d_model = 512
  config.model.num_heads = 8
  config.model.num_encoder_layers = 6
  config.model.num_decoder_layers = 6
  config.model.d_ff = 2048
  config.model.dropout_rate = 0.1
  config.model.attention.dropout_rate = 0.0
  config.model.max_len = 320
  config.model.positional = 'sinusoidal'
  config.model.attention.score = 'scaled_dot'
  config.model.norm = 'post'
  config.model.share_embeddings = True
  config.model.tie_output_embedding = True
  config.model.dtype = 'bfloat16'

  config.decoding = ml_collections.ConfigDict()
  config.decoding.beam_size = 4
  config.decoding.alpha = 0.6
  config.decoding.max_extra_len = 50
  config.decoding.eval_beam_size = 4
  config.decoding.batch_size = 256
  config.decoding.length_multiple = 32
  return config
