"""ANIL: adapt only the head in the inner loop."""

from __future__ import annotations

from collections.abc import Sequence

from metajax.algorithms.maml import maml
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner


def anil(model: Model, *, head: str | Sequence[str] = "head", **maml_kwargs) -> MetaLearner:
  """Almost No Inner Loop: MAML whose inner loop adapts only the head.

  The body is meta-learned by the outer loop and left unchanged in the inner loop.

  Args:
    model: the learner; its params must have top-level key(s) ``head``.
    head: top-level parameter key(s) adapted in the inner loop. The models in
      :mod:`metajax.models` call their classifier ``"head"``.
    **maml_kwargs: keyword arguments of :func:`metajax.maml`.

  Returns:
    A :class:`metajax.MetaLearner`.

  References:
    Raghu, Raghu, Bengio & Vinyals, "Rapid Learning or Feature Reuse? Towards
    Understanding the Effectiveness of MAML", ICLR 2020. https://arxiv.org/abs/1909.09157
  """
  heads = (head,) if isinstance(head, str) else tuple(head)
  keys = list(model.params) if isinstance(model.params, dict) else []
  missing = [h for h in heads if h not in keys]
  if missing:
    raise ValueError(
        f"ANIL adapts the head, but the model's params have no top-level key(s) {missing} "
        f"(keys: {keys}); pass head='<name of the last layer>'."
    )
  return maml(model, adapt_filter=lambda path: path[0] in heads, **maml_kwargs)._replace(
      name="anil")
