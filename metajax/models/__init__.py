"""Model zoo: Flax NNX networks wrapped as pure :class:`metajax.Model` values."""

from metajax.models.mlp import MLP as MLP
from metajax.models.mlp import mlp_model as mlp_model
