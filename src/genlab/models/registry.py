"""Name -> (model class, config dataclass). Models register themselves with `@register("name")`.

Import it as `from genlab.models import registry`: importing the package registers every family first.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import merge
from ..errors import UserError, machine_memory, unknown


@dataclass(frozen=True)
class Entry:
    name: str
    model_cls: type
    config_cls: type
    defaults: dict  # recommended data/train settings, e.g. {"data": {"range": "-11"}}; the user's win
    variants: tuple[str, dict] | None = None  # (model field, {value: settings}): a variant's own papers' settings
    # fields added after runs were saved, with the value such a run used: a run's config.json that lacks the field
    # predates it (a StyleGAN run before model.output trained the linear output, now no longer the default)
    earlier: dict = dataclasses.field(default_factory=dict)

    def recommended(self, model_settings: dict) -> dict:
        """The model's recommended settings, with those of the variant the user picked on top (a WGAN's
        RMSprop at 5e-5, say, when model.loss=wgan); everything the user gives still wins over both."""
        if self.variants is None:
            return self.defaults
        field, table = self.variants
        value = model_settings.get(field, getattr(self.config_cls(), field))
        return merge(self.defaults, table.get(value, {}))

    @property
    def summary(self) -> str:
        doc = (self.model_cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, Entry] = {}


def register(name: str, config_cls: type, defaults: dict | None = None, variants: tuple[str, dict] | None = None,
             earlier: dict | None = None):
    """Class decorator: make a model buildable by name from its config dataclass.

    `defaults` holds the data and train settings the model's paper uses (a GAN's [-1, 1] range and
    Adam beta1 = 0.5, say); `variants` = (field, {value: settings}) adds the settings of the paper behind
    each value of one model field (a GAN's loss). Both sit below everything the user gives. `earlier` maps
    fields added since runs were first saved to the value those runs used, where it differs from the new default.
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config for '{name}' must be a dataclass")

    def wrap(model_cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = Entry(name, model_cls, config_cls, defaults or {}, variants, earlier or {})
        model_cls.registry_name = name
        return model_cls

    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Entry:
    if not isinstance(name, str) or name not in _REGISTRY:  # a damaged config may name a number or a list
        raise unknown("model", name, _REGISTRY)
    return _REGISTRY[name]


def check_size(name: str, cfg: Any, info: Any, memory: int | None = None) -> None:
    """Refuse settings whose model would not fit in memory, before any memory is asked for: the model is built
    on the meta device (shapes only), and training needs about 4 bytes x 4 per float parameter (weights,
    gradients and Adam's two moments)."""
    import torch

    try:
        with torch.device("meta"):
            model = get(name).model_cls(cfg, info)
    except UserError:
        raise
    except Exception:  # a model whose construction computes with real tensors: no estimate, the real build decides
        return
    tensors = [(n, t) for n, t in (*model.named_parameters(), *model.named_buffers())]
    total = sum(t.numel() * t.element_size() for _, t in tensors)
    memory = machine_memory() if memory is None else memory
    if tensors and 4 * total > memory:
        big_name, big = max(tensors, key=lambda nt: nt[1].numel())
        raise UserError(f"these settings give '{name}' {total / 2**30:.1f} GiB of weights (about 4x that to train), "
                        f"more than this machine's {memory / 2**30:.0f} GiB; the largest is {big_name} "
                        f"({' x '.join(map(str, big.shape))}): lower the model or data sizes that set it")


def build(name: str, cfg: Any, info: Any):
    """Instantiate model `name` from its config dataclass (validated here too) and the data's `DataInfo`,
    after checking that it fits in memory."""
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    if getattr(info, "paired", False) and not getattr(get(name).model_cls, "takes_pairs", False):
        raise UserError(f"the data are (input, target) pairs, which only image-to-image models take (pix2pix with "
                        f"model.pair=source), not '{name}'")
    check_size(name, cfg, info)
    return get(name).model_cls(cfg, info)
