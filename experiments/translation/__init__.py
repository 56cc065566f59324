"""Machine translation on the shared trainer: Multi30k (local TFDS builder) and WMT14 (TFDS).

multi30k.py        TFDS builder for the local Multi30k gz files (pairs x raw/tok variants)
data.py            sentence pairs per split from TFDS, in the configured direction
tokenizer.py       SentencePiece, trained once into WORKDIR/assets and reused
batching.py        token-budget batches with length buckets (step-indexed, exact resume)
losses.py          label-smoothed cross-entropy, padding masked
bleu.py            sacrebleu: tokenized BLEU (tok variant) / detokenized sacreBLEU (raw)
text.py            Moses-style preprocessing of new input for tok-variant models
inference.py       batched greedy/beam translation (transformer/decoding.py)
attention_plots.py cross-attention heatmaps of a translation
task.py            the TranslationTask (experiments/task.py protocol)
cli.py             the `run.py translate` verb
"""
