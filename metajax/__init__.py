"""metajax: functional meta-learning in JAX.

Learners are pure functions ``apply(params, state, x, *, train)`` over parameter
pytrees; algorithms are small values of pure functions of one task; the task
axis is added once, in the compiled :func:`make_meta_step`.
"""

from metajax import algorithms as algorithms
from metajax import data as data
from metajax import models as models
from metajax.algorithms import anil as anil
from metajax.algorithms import baseline as baseline
from metajax.algorithms import baseline_plus_plus as baseline_plus_plus
from metajax.algorithms import cavia as cavia
from metajax.algorithms import fomaml as fomaml
from metajax.algorithms import hypernetwork as hypernetwork
from metajax.algorithms import imaml as imaml
from metajax.algorithms import linear_probe as linear_probe
from metajax.algorithms import maml as maml
from metajax.algorithms import maml_plus_plus as maml_plus_plus
from metajax.algorithms import matching_net as matching_net
from metajax.algorithms import meta_sgd as meta_sgd
from metajax.algorithms import metaoptnet as metaoptnet
from metajax.algorithms import multitask as multitask
from metajax.algorithms import nearest_centroid as nearest_centroid
from metajax.algorithms import pretrain as pretrain
from metajax.algorithms import protonet as protonet
from metajax.algorithms import r2d2 as r2d2
from metajax.algorithms import relation_net as relation_net
from metajax.algorithms import reptile as reptile
from metajax.algorithms import reptile_outer_optimizer as reptile_outer_optimizer
from metajax.algorithms import siamese as siamese
from metajax.algorithms import snail as snail
from metajax.algorithms import versa as versa
from metajax.core.inner_loop import InnerLoopResult as InnerLoopResult
from metajax.core.inner_loop import inner_loop as inner_loop
from metajax.core.inner_loop import learned_sgd as learned_sgd
from metajax.core.learner import Model as Model
from metajax.core.learner import from_function as from_function
from metajax.core.learner import from_linen as from_linen
from metajax.core.learner import from_nnx as from_nnx
from metajax.core.losses import Loss as Loss
from metajax.core.losses import accuracy as accuracy
from metajax.core.losses import mean_squared_error as mean_squared_error
from metajax.core.losses import softmax_cross_entropy as softmax_cross_entropy
from metajax.core.meta_learner import MetaLearner as MetaLearner
from metajax.core.meta_step import MetaTrainState as MetaTrainState
from metajax.core.meta_step import NonFiniteStepError as NonFiniteStepError
from metajax.core.meta_step import batched_task_grads as batched_task_grads
from metajax.core.meta_step import evaluate_tasks as evaluate_tasks
from metajax.core.meta_step import init_meta_state as init_meta_state
from metajax.core.meta_step import make_meta_step as make_meta_step
from metajax.core.meta_step import select_batching as select_batching
from metajax.core.types import Task as Task

__version__ = "0.1.0"
