"""Language modelling on the shared trainer: a decoder-only Transformer on plain text.

data.py        sentences per split (Multi30k files or any text files), batches, byte counts
task.py        the LanguageModelTask (experiments/core/task.py protocol): perplexity per token/byte
generation.py  prompted sampling with the KV cache and causal-attention heatmaps
cli.py         the `run.py generate` verb
"""
