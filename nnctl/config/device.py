"""The config's `device` applied to a built model: `cuda` when asked for and able to run (a located error saying
why not otherwise: no GPU or driver, the extra missing, a layer not on the CUDA backend yet), `auto` the GPU
when that works and the CPU otherwise, `cpu` the CPU."""

from __future__ import annotations

from nnctl.config.yamlfile import ConfigError

ALLOWED = "(allowed: cpu, auto)"


def check_gpu(resolved) -> list:
    """The located issue when `device: cuda` cannot run on this machine at all (checked before the data loads)."""
    if resolved.config.device != "cuda":
        return []
    from nnctl.engine.cuda_device import problem

    reason = problem()
    return [resolved.issue(("device",), f"cannot run on cuda: {reason} {ALLOWED}")] if reason else []


def place(resolved, model) -> str:
    """Sets `model.device` from the config; returns it. A ConfigError located at `device` when `cuda` was asked
    for and this machine or this model cannot run it."""
    wanted = resolved.config.device
    if wanted == "cpu" or model is None:
        return "cpu"
    from nnctl.engine.cuda_device import problem
    from nnctl.nn.cudapath import unsupported

    reason = problem() or unsupported(model)
    if reason is None:
        model.device = "cuda"
        return "cuda"
    if wanted == "auto":
        return "cpu"
    raise ConfigError([resolved.issue(("device",), f"cannot run on cuda: {reason} {ALLOWED}")])
