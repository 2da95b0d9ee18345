"""FAVOR+ attention: the only home of the feature maps, projections and linear-attention algebra,
and the attention kernels (:mod:`.kernels`) through which the layer uses them."""

from protein_performer.attention.exact import exact_attention, exact_attention_weights
from protein_performer.attention.features import (
    favorpp_coefficient,
    gaussian_orthogonal_matrix,
    iid_gaussian_matrix,
    relu_features,
    softmax_feature_logits,
    softmax_features,
    trig_features,
)
from protein_performer.attention.kernels import (
    KERNELS,
    AttentionKernel,
    AttentionKind,
    AttentionOptions,
    FeatureMap,
    RandomFeatures,
    make_kernel,
)
from protein_performer.attention.layer import FavorAttention, Segments, protein_segments
from protein_performer.attention.linear import (
    favor_attention,
    favor_attention_weights,
    favor_step,
)
from protein_performer.attention.local import local_attention, local_attention_weights
from protein_performer.attention.recurrent import DecodeState, LayerState
from protein_performer.attention.rotary import RotaryEmbedding, apply_rotary

__all__ = [
    "KERNELS", "AttentionKernel", "AttentionKind", "AttentionOptions", "DecodeState", "FavorAttention",
    "FeatureMap", "LayerState", "RandomFeatures", "RotaryEmbedding", "Segments", "apply_rotary",
    "exact_attention", "exact_attention_weights", "favor_attention", "favor_attention_weights",
    "favor_step", "favorpp_coefficient", "gaussian_orthogonal_matrix", "iid_gaussian_matrix",
    "local_attention", "local_attention_weights", "make_kernel", "protein_segments",
    "relu_features", "softmax_feature_logits", "softmax_features", "trig_features",
]
