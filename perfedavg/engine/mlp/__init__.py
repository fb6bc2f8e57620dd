r"""A hand-written gradient oracle for MLP classifiers, batched over stacked users: the oracle
interface (``grad``, ``hvp``) and the engine's fast path (fused local steps, whole rounds in the
users' sample space) without autograd.

Read in this order:

* :mod:`~perfedavg.engine.mlp.layout`: the architecture and the flat / layer-major parameter layout;
* :mod:`~perfedavg.engine.mlp.kernels`: activation, softmax cross-entropy, forward pass, fused writes;
* :mod:`~perfedavg.engine.mlp.derivatives`: gradients and the R-operator's Hessian-vector products;
* :mod:`~perfedavg.engine.mlp.steps`: FedAvg's and Per-FedAvg's fused local steps;
* :mod:`~perfedavg.engine.mlp.sample_space`: whole rounds in sample space, and when they are cheaper;
* :mod:`~perfedavg.engine.mlp.oracle`: :class:`MLPOracle`, which puts them together.
"""

from perfedavg.engine.mlp.kernels import FUSED_WRITE_MIN
from perfedavg.engine.mlp.layout import ACTIVATIONS, MLP
from perfedavg.engine.mlp.malloc import tune_malloc
from perfedavg.engine.mlp.oracle import MLPOracle, mlp_oracle_factory
from perfedavg.engine.mlp.sample_space import ROUND_STRATEGIES, first_layer_macs

__all__ = [
    "ACTIVATIONS",
    "FUSED_WRITE_MIN",
    "MLP",
    "ROUND_STRATEGIES",
    "MLPOracle",
    "first_layer_macs",
    "mlp_oracle_factory",
    "tune_malloc",
]
