"""Transformer library: functional attention, Flax modules, positional encodings, models."""

# Modules and models (transformer/attention_config.py, multihead.py, positional.py, blocks.py,
# stack.py, models.py, classifier.py); per-layer access and layout conversion (stack_layout.py).
from transformer.attention_config import SCORES, WEIGHTINGS, AttentionConfig
from transformer.blocks import (
    BlockConfig,
    CausalBlock,
    CausalDecoder,
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForward,
)
from transformer.classifier import ClassifierConfig, EncoderClassifier, patchify
from transformer.models import EncoderDecoder, EncoderDecoderConfig
from transformer.multihead import CausalSelfAttention, CrossAttention, MultiHeadAttention, SelfAttention
from transformer.stack import stack_layers
from transformer.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    apply_rope,
    sinusoidal_encoding,
)

# Functional core (pure jax.numpy) and plotting. The function `attention` is imported from its
# module (`from transformer.attention import attention`) so that `transformer.attention` stays
# the module.
from transformer.attention import (
    SCORE_FUNCTIONS,
    additive_scores,
    compute_scores,
    dot_scores,
    general_scores,
    hard_weights,
    init_score_params,
    local_weights,
    location_scores,
    reference_attention,
    scaled_dot_scores,
    soft_weights,
    weigh,
)
from transformer.masks import causal_mask, combine_masks, local_m_centers, local_mask, padding_mask
from transformer.plotting import plot_attention
