"""Meta-learning algorithms, each a factory returning a :class:`metajax.MetaLearner`."""

from metajax.algorithms.anil import anil as anil
from metajax.algorithms.maml import fomaml as fomaml
from metajax.algorithms.maml import maml as maml
from metajax.algorithms.maml_plus_plus import maml_plus_plus as maml_plus_plus
from metajax.algorithms.maml_plus_plus import multi_step_loss_weights as multi_step_loss_weights
from metajax.algorithms.meta_sgd import meta_sgd as meta_sgd
from metajax.algorithms.protonet import protonet as protonet
from metajax.algorithms.reptile import reptile as reptile
from metajax.algorithms.reptile import reptile_outer_optimizer as reptile_outer_optimizer
