"""Geometry: the functional Poincaré-ball core (``poincare``), its numerical constants
(``constants``) and the manifold objects everything else takes (``manifolds``)."""

from hrqtok.geometry.constants import MIN_NORM
from hrqtok.geometry.manifolds import (
                                      MANIFOLDS,
                                      Euclidean,
                                      Manifold,
                                      PoincareBall,
                                      manifold,
)
from hrqtok.geometry.poincare import (
                                      DistanceParts,
                                      artanh,
                                      ball,
                                      check_on_ball,
                                      dist,
                                      dist0,
                                      dist_arcosh,
                                      distance_chain,
                                      distance_keys,
                                      distance_parts,
                                      einstein_midpoint,
                                      expmap,
                                      expmap0,
                                      lambda_x,
                                      logmap,
                                      logmap0,
                                      max_norm,
                                      mlr_logits,
                                      mobius_add,
                                      mobius_matvec,
                                      norm,
                                      project,
                                      rsgd_step,
                                      squared_distance_grads,
                                      tanh,
)

__all__ = [
    "MANIFOLDS", "MIN_NORM", "DistanceParts", "Euclidean", "Manifold", "PoincareBall", "artanh",
    "ball", "check_on_ball", "dist", "dist0", "dist_arcosh", "distance_chain", "distance_keys",
    "distance_parts", "einstein_midpoint", "expmap", "expmap0", "lambda_x", "logmap", "logmap0",
    "manifold", "max_norm", "mlr_logits", "mobius_add", "mobius_matvec", "norm", "project",
    "rsgd_step", "squared_distance_grads", "tanh",
]
