"""Model zoo: Flax NNX networks wrapped as pure :class:`metajax.Model` values."""

from metajax.models.conv4 import Conv4 as Conv4
from metajax.models.conv4 import conv4_model as conv4_model
from metajax.models.film_conv4 import FiLMConv4 as FiLMConv4
from metajax.models.mlp import MLP as MLP
from metajax.models.mlp import mlp_model as mlp_model
from metajax.models.resnet12 import ResNet12 as ResNet12
from metajax.models.resnet12 import resnet12_model as resnet12_model
