"""Random draws from an explicit ``torch.Generator``, on the generator's device, no host sync.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["beta", "default_generator", "permutation", "pick_generator", "uniform"]


def default_generator(device: torch.device) -> torch.Generator:
    """The global generator of a device, used only when the caller passes none."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index or 0]
    return torch.Generator(device=device)


def uniform(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device, dtype=torch.float64)


def beta(alpha: float, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) in float64, as the ratio of two Gamma(alpha) draws."""
    concentration = torch.full((2, n), float(alpha), dtype=torch.float64, device=device)
    gammas = torch._standard_gamma(concentration, generator=generator)
    total = gammas[0] + gammas[1]
    # For tiny alpha both gammas can underflow to 0; Beta(a, a) then puts its mass at 0 and 1.
    coin = (torch.rand(n, generator=generator, device=device, dtype=torch.float64) < 0.5).double()
    return torch.where(total > 0, gammas[0] / total.clamp(min=torch.finfo(torch.float64).tiny), coin)


def permutation(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=device)


def pick_generator(generator: Optional[torch.Generator], device: torch.device) -> torch.Generator:
    if generator is None:
        return default_generator(device)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"Expected generator to be a torch.Generator, but got {type(generator).__name__} instead.")
    if generator.device.type != device.type:
        raise ValueError(
            f"Expected a generator on the images' device ({device.type}), "
            f"but got one on {generator.device.type} instead."
        )
    return generator
