"""The registry of recordable units: every output channel of Linear/Conv1d/LayerNorm/GLU leaves in the three stacks.

Each site knows its stack, layer, component, width, channel axis and time domain from the module's type and place
in the architecture (never from a tensor's shape), so it can be built on the meta device in a fraction of a second.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from torch import nn

from neuron_atlas.engine.constants import COMPONENTS, STACKS

#: Named groups of components usable wherever a component filter is (the paper's decoder attention-only sets).
COMPONENT_GROUPS: dict[str, tuple[str, ...]] = {"attention": ("self-attn", "cross-attn")}
EXCLUDED = ("feature_projection", "distance_embedding")


def component_members(name: str) -> tuple[str, ...]:
    """The components a component filter names: itself, or the members of a group such as `attention`."""
    if name in COMPONENT_GROUPS:
        return COMPONENT_GROUPS[name]
    if name in COMPONENTS:
        return (name,)
    raise ValueError(f"unknown component {name!r}; expected one of {', '.join(COMPONENTS + tuple(COMPONENT_GROUPS))}")
UNIT_TYPES = (nn.Linear, nn.Conv1d, nn.LayerNorm, nn.GLU)

#: GLUs whose input width comes from a sibling conv; a GLU shared by two paths is called once per path, in order.
GLU_FEEDERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("SeamlessM4Tv2ConformerConvolutionModule", "glu"): ("pointwise_conv1",),
    ("SeamlessM4Tv2ConformerAdapterLayer", "activation"): ("residual_conv", "self_attn_conv"),
}

#: Time domains: which mask pools a site's positions.
DOMAINS = ("speech_frames", "speech_adapter", "text_tokens", "decoder", "encoder_out")


@dataclass(frozen=True)
class UnitSite:
    """One hook point: a leaf module's output (one call of it), whose channels are units `offset .. offset+width-1`."""

    key: str
    module: str
    call: int
    stack: str
    layer: int
    component: str
    kind: str
    width: int
    channel_axis: int
    domain: str
    offset: int

    @property
    def units(self) -> range:
        return range(self.offset, self.offset + self.width)


def _layer_component_domain(stack: str, rel: str, kind: str, n_layers: int, n_adapter: int) -> tuple[int, str, str]:
    m = re.match(r"(?:encoder\.)?layers\.(\d+)\.(.*)", rel)
    if stack == "speech_encoder":
        if m and rel.startswith("encoder."):
            layer, rest = int(m.group(1)), m.group(2)
            if kind == "LayerNorm":
                comp = "norm"
            elif rest.startswith("self_attn."):
                comp = "self-attn"
            elif rest.startswith(("ffn1.", "ffn2.")):
                comp = "ffn"
            elif rest.startswith("conv_module."):
                comp = "conv"
            else:
                raise ValueError(f"unclassified speech encoder module {rel!r}")
            return layer, comp, "speech_frames"
        if rel == "encoder.layer_norm":
            return n_layers, "norm", "speech_frames"
        if rel.startswith("intermediate_ffn."):
            return n_layers, "ffn", "speech_frames"
        am = re.match(r"adapter\.layers\.(\d+)\.(.*)", rel)
        if am:
            rest = am.group(2)
            domain = "speech_frames" if rest in ("residual_layer_norm", "self_attn_layer_norm") else "speech_adapter"
            return n_layers + 1 + int(am.group(1)), "adapter", domain
        if rel == "inner_layer_norm":
            return n_layers + 1 + n_adapter, "norm", "speech_adapter"
        raise ValueError(f"unclassified speech encoder module {rel!r}")
    domain = "text_tokens" if stack == "text_encoder" else "decoder"
    if rel == "layer_norm":
        return n_layers, "norm", domain
    if not m:
        raise ValueError(f"unclassified {stack} module {rel!r}")
    layer, rest = int(m.group(1)), m.group(2)
    if kind == "LayerNorm":
        return layer, "norm", domain
    if rest.startswith("self_attn."):
        return layer, "self-attn", domain
    if rest.startswith("cross_attention."):
        return layer, "cross-attn", "encoder_out" if rest.split(".")[-1] in ("k_proj", "v_proj") else domain
    if rest.startswith("ffn."):
        return layer, "ffn", domain
    raise ValueError(f"unclassified {stack} module {rel!r}")


class SiteRegistry:
    """All unit sites of one model, in a fixed order (speech encoder, text encoder, text decoder)."""

    def __init__(self, sites: list[UnitSite]):
        self.sites = sites
        self.by_key = {s.key: s for s in sites}
        self.stack_ranges: dict[str, range] = {}
        for stack in STACKS:
            ss = [s for s in sites if s.stack == stack]
            if ss:
                self.stack_ranges[stack] = range(ss[0].offset, ss[-1].offset + ss[-1].width)
        self.n_units = sites[-1].offset + sites[-1].width if sites else 0

    @classmethod
    def from_model(cls, model: nn.Module) -> SiteRegistry:
        """Walk the model's modules (works on the meta device) and register every unit site."""
        cfg = model.config
        n_layers = {"speech_encoder": cfg.speech_encoder_layers, "text_encoder": cfg.encoder_layers, "text_decoder": cfg.decoder_layers}
        n_adapter = cfg.num_adapter_layers if getattr(cfg, "add_adapter", False) else 0
        modules = dict(model.named_modules())
        sites: list[UnitSite] = []
        offset = 0
        for stack in STACKS:
            if stack not in modules:
                continue
            for name, mod in modules[stack].named_modules(prefix=stack):
                if not isinstance(mod, UNIT_TYPES) or any(part in EXCLUDED for part in name.split(".")):
                    continue
                rel = name[len(stack) + 1 :]
                kind = type(mod).__name__
                parent_name, _, attr = name.rpartition(".")
                if isinstance(mod, nn.GLU):
                    parent = modules[parent_name]
                    feeders = GLU_FEEDERS.get((type(parent).__name__, attr))
                    if feeders is None:
                        raise ValueError(f"GLU {name!r} has no known input convolution")
                    calls = [(i, f, modules[f"{parent_name}.{f}"].out_channels // 2, mod.dim) for i, f in enumerate(feeders)]
                elif isinstance(mod, nn.Linear):
                    calls = [(0, None, mod.out_features, -1)]
                elif isinstance(mod, nn.Conv1d):
                    calls = [(0, None, mod.out_channels, 1)]
                else:
                    calls = [(0, None, mod.normalized_shape[-1], -1)]
                layer, comp, domain = _layer_component_domain(stack, rel, kind, n_layers[stack], n_adapter)
                for call, feeder, width, axis in calls:
                    key = name if len(calls) == 1 else f"{name}@{feeder}"
                    sites.append(UnitSite(key, name, call, stack, layer, comp, kind, width, axis, domain, offset))
                    offset += width
        return cls(sites)

    def stack_sites(self, stack: str) -> list[UnitSite]:
        return [s for s in self.sites if s.stack == stack]

    def stack_width(self, stack: str) -> int:
        r = self.stack_ranges.get(stack)
        return len(r) if r else 0

    def site_of_unit(self, unit_id: int) -> tuple[UnitSite, int]:
        """The site holding a global unit id, and the channel within it."""
        if not 0 <= unit_id < self.n_units:
            raise IndexError(f"unit {unit_id} is out of range: this model has units 0..{self.n_units - 1}")
        offsets = np.fromiter((s.offset for s in self.sites), dtype=np.int64, count=len(self.sites))
        i = int(np.searchsorted(offsets, unit_id, side="right") - 1)
        site = self.sites[i]
        return site, unit_id - site.offset

    def unit_id(self, key: str, channel: int) -> int:
        """Global unit id of (site key, channel), with errors that name what is wrong."""
        site = self.by_key.get(key)
        if site is None:
            raise KeyError(f"unknown module {key!r}: not a unit site of this model")
        if not 0 <= channel < site.width:
            raise IndexError(f"channel {channel} is out of range for {key!r}, which has channels 0..{site.width - 1}")
        return site.offset + channel

    def sites_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.sites])

    def in_reference(self) -> np.ndarray:
        """Per site, whether the reference code records it: its hooks keep one output per module and forward pass,
        the last call's, so of the adapter GLU's two calls only the second (`@self_attn_conv`) is the reference's."""
        last: dict[str, int] = {}
        for s in self.sites:
            last[s.module] = max(last.get(s.module, 0), s.call)
        return np.fromiter((s.call == last[s.module] for s in self.sites), dtype=bool, count=len(self.sites))

    def units_frame(self) -> pd.DataFrame:
        """One row per unit: id, site key, channel, stack, layer, component, kind (vectorised expansion of sites)."""
        sites = self.sites_frame()
        widths = sites["width"].to_numpy()
        idx = np.repeat(np.arange(len(sites)), widths)
        starts = np.repeat(sites["offset"].to_numpy(), widths)
        unit_id = np.arange(self.n_units, dtype=np.int64)
        out = sites.iloc[idx][["key", "stack", "layer", "component", "kind"]].reset_index(drop=True)
        out.insert(0, "unit_id", unit_id)
        out.insert(2, "channel", (unit_id - starts).astype(np.int32))
        return out

    def counts(self) -> pd.DataFrame:
        """Units per stack and component (what `neuron-atlas sites` prints)."""
        df = self.sites_frame()
        table = df.pivot_table(index="stack", columns="component", values="width", aggfunc="sum", fill_value=0)
        table["total"] = table.sum(axis=1)
        table = table.reindex([s for s in STACKS if s in table.index])
        table.loc["all"] = table.sum(axis=0)
        return table.astype(int)

    def select(self, stacks: Iterable[str]) -> list[UnitSite]:
        wanted = set(stacks)
        return [s for s in self.sites if s.stack in wanted]
