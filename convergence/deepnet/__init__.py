"""The deep-net module (torch): the SAM-family rules of ``convergence.methods`` as torch optimizers,
CIFAR models and data kept on the device, and the training loop of ``experiments.run_cifar``.

torch is imported only inside this package (``pip install -e ".[deepnet]"``), and only when a torch
part is used: ``convergence.deepnet.schedules`` needs sympy alone.
"""
MODEL_NAMES = ("tiny", "resnet18", "resnet34", "wrn28_10")   # convergence.deepnet.models.MODELS, torch-free
_EXPORTS = {"ParamVec": "paramvec", "SAMFamily": "optim", "freeze_bn_stats": "optim",
            "disable_running_stats": "optim", "enable_running_stats": "optim", "make_model": "models"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f"convergence.deepnet.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'convergence.deepnet' has no attribute '{name}'")
