"""Machine translation on the shared trainer: Multi30k (local TFDS builder) and WMT14 (TFDS).

data.py            sentence pairs per split from TFDS, in the configured direction
bleu.py            sacrebleu: tokenized BLEU (tok variant) / detokenized sacreBLEU (raw)
inference.py       batched greedy/beam translation (transformer/decoding.py)
attention_plots.py cross-attention heatmaps of a translation
task.py            the TranslationTask (experiments/core/task.py protocol)
cli.py             the `run.py translate` verb
"""
