"""FAVOR+ attention: the only home of the feature maps, projections and linear-attention algebra."""

from protein_performer.attention.features import (
    favorpp_coefficient,
    gaussian_orthogonal_matrix,
    iid_gaussian_matrix,
    relu_features,
    softmax_feature_logits,
    softmax_features,
    trig_features,
)
from protein_performer.attention.layer import AttentionKind, FavorAttention, Segments, protein_segments
from protein_performer.attention.local import local_attention, local_attention_weights
from protein_performer.attention.recurrent import DecodeState, LayerState, attention_step, init_layer_state
from protein_performer.attention.linear import (
    exact_attention,
    exact_attention_weights,
    favor_attention,
    favor_attention_weights,
)
from protein_performer.attention.rotary import RotaryEmbedding, apply_rotary

__all__ = [
    "AttentionKind", "FavorAttention", "RotaryEmbedding", "apply_rotary", "exact_attention",
    "exact_attention_weights", "favor_attention", "favor_attention_weights", "favorpp_coefficient",
    "local_attention", "local_attention_weights", "protein_segments", "Segments",
    "gaussian_orthogonal_matrix", "iid_gaussian_matrix", "relu_features",
    "softmax_feature_logits", "softmax_features", "trig_features",
]
