"""Meta-learning algorithms, each a factory returning a :class:`metajax.MetaLearner`."""

from metajax.algorithms.anil import anil as anil
from metajax.algorithms.maml import fomaml as fomaml
from metajax.algorithms.maml import maml as maml
from metajax.algorithms.maml_plus_plus import maml_plus_plus as maml_plus_plus
from metajax.algorithms.maml_plus_plus import multi_step_loss_weights as multi_step_loss_weights
from metajax.algorithms.matching_net import matching_net as matching_net
from metajax.algorithms.meta_sgd import meta_sgd as meta_sgd
from metajax.algorithms.protonet import protonet as protonet
from metajax.algorithms.r2d2 import r2d2 as r2d2
from metajax.algorithms.relation_net import relation_module_model as relation_module_model
from metajax.algorithms.relation_net import relation_net as relation_net
from metajax.algorithms.reptile import reptile as reptile
from metajax.algorithms.reptile import reptile_outer_optimizer as reptile_outer_optimizer
from metajax.algorithms.siamese import siamese as siamese
from metajax.algorithms.siamese import verification_metrics as verification_metrics
