"""Text pieces shared by the text tasks (translation, lm): SentencePiece tokenizer, token-budget
batching, label-smoothed losses, config checks, Moses text processing, command-line input lines,
the Multi30k TFDS builder and the synthetic test corpus. No task module is imported here."""
