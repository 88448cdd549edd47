"""One entry point that turns a model spec (hub id, local folder, `demo`, `tiny-random`, `full-random`) into a ready model."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoProcessor,
    GenerationConfig,
    SeamlessM4TFeatureExtractor,
    SeamlessM4TTokenizer,
    SeamlessM4Tv2Model,
)

from neuron_atlas.engine.model.configs import TINY_DIMS, full_config, generation_config, small_config
from neuron_atlas.engine.model.tokenizer import train_tokenizer
from neuron_atlas.engine.example import CORPUS_LANGUAGES
from neuron_atlas.engine.sentences import SENTENCES
from neuron_atlas.resources import demo_model_dir

log = logging.getLogger(__name__)

REAL_MODEL_ID = "facebook/seamless-m4t-v2-large"
BUILTIN_SPECS = ("demo", "tiny-random", "full-random")
#: Where the shipped demo model lives (trained by `neuron_atlas/demo_trainer`; package data, see neuron_atlas.resources).
DEMO_MODEL_DIR = demo_model_dir()


class ModelLoadError(RuntimeError):
    """The model spec cannot be turned into a model; the message says which spec and why."""


@dataclass
class ModelBundle:
    """A loaded model with everything needed to feed it: tokenizer, feature extractor, device, dtype, languages."""

    model: SeamlessM4Tv2Model
    tokenizer: SeamlessM4TTokenizer
    feature_extractor: SeamlessM4TFeatureExtractor
    spec: str
    device: torch.device
    dtype: torch.dtype
    checksum: str
    languages: tuple[str, ...] = field(default=())

    @property
    def config(self):
        return self.model.config

    def describe(self) -> dict:
        """JSON-able identity of the loaded model, stored with every run and finding."""
        return {
            "spec": self.spec,
            "checksum": self.checksum,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "languages": list(self.languages),
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
        }


def pick_device_dtype(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """bf16 on GPUs with compute capability >= 8, fp16 on older GPUs, fp32 on CPU (the paper's policy)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but no CUDA GPU is available")
        major, _ = torch.cuda.get_device_capability(dev)
        return dev, torch.bfloat16 if major >= 8 else torch.float16
    if dev.type == "meta":
        return dev, torch.float32
    return dev, torch.float32


#: Below this many parameters, CPU inference runs on one intra-op thread: on small matrices thread hand-offs cost
#: more than they save (measured 45x faster for the tiny model on 2 cores); parallelism comes from processes instead.
SMALL_MODEL_PARAMETERS = 50_000_000


def configure_cpu_threads(bundle: "ModelBundle") -> int:
    """Use one torch thread for small models on CPU; leave the default otherwise. Returns the thread count."""
    if bundle.device.type == "cpu" and sum(p.numel() for p in bundle.model.parameters()) < SMALL_MODEL_PARAMETERS:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _languages_of(model: SeamlessM4Tv2Model) -> tuple[str, ...]:
    """Target languages the model can generate, corpus languages first (JSON round trips sort the maps)."""
    mapping = getattr(model.generation_config, "text_decoder_lang_to_code_id", None) or {}
    rank = {lang: i for i, lang in enumerate(CORPUS_LANGUAGES)}
    return tuple(sorted(mapping, key=lambda lang: (rank.get(lang, len(rank)), lang)))


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def folder_checksum(folder: Path) -> str:
    """Checksum of a saved model folder: weights, config and generation config (identifies a model in findings)."""
    files = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") or p.name in ("config.json", "generation_config.json")]
    if not files:
        raise ModelLoadError(f"{folder} holds no model weights (*.safetensors or *.bin)")
    return _hash_files(files)


def state_checksum(model: torch.nn.Module) -> str:
    """Checksum of a model's parameters (for models built in code)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def builtin_corpus_texts() -> list[str]:
    """All texts of the built-in parallel corpus, in every language: what the built-in tokenizers are trained on."""
    return [text for sentence in SENTENCES for text in sentence.texts.values()]


def build_tiny_random(seed: int = 0, languages: tuple[str, ...] | None = None) -> tuple[SeamlessM4Tv2Model, SeamlessM4TTokenizer]:
    """A tiny SeamlessM4Tv2 with seeded random weights and a tokenizer trained on the built-in corpus."""
    languages = tuple(languages or CORPUS_LANGUAGES)
    tokenizer = train_tokenizer(builtin_corpus_texts(), languages, vocab_size=600)
    config = small_config(tokenizer, languages, TINY_DIMS)
    torch.manual_seed(seed)
    model = SeamlessM4Tv2Model(config)
    model.generation_config = generation_config(config, tokenizer, languages)
    return model.eval(), tokenizer


def _load_full_random(device: torch.device, dtype: torch.dtype, seed: int) -> tuple[SeamlessM4Tv2Model, SeamlessM4TTokenizer]:
    tokenizer = train_tokenizer(builtin_corpus_texts(), CORPUS_LANGUAGES, vocab_size=600)
    config = full_config(languages=CORPUS_LANGUAGES)
    torch.manual_seed(seed)
    with torch.device(device):
        model = SeamlessM4Tv2Model(config)
    if device.type != "meta":
        model = model.to(dtype)
    model.generation_config = generation_config(config, tokenizer, CORPUS_LANGUAGES)
    return model.eval(), tokenizer


def _load_error(source: str, exc: OSError) -> ModelLoadError:
    return ModelLoadError(
        f"could not load model {source!r}: {exc}. Give a local folder written by save_pretrained, "
        f"or a hub id on a machine that can reach the Hugging Face hub (e.g. {REAL_MODEL_ID!r})."
    )


def _load_pretrained_meta(source: str, device: torch.device, dtype: torch.dtype) -> tuple[SeamlessM4Tv2Model, object, str]:
    """The model's architecture from its config alone, on the meta device (no weights read or downloaded: what a
    capacity plan needs), with its processor and generation config."""
    try:
        processor = AutoProcessor.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
        with torch.device("meta"):
            model = SeamlessM4Tv2Model(config)
        model.generation_config = GenerationConfig.from_pretrained(source)
    except OSError as exc:
        raise _load_error(source, exc) from exc
    return model.eval(), processor, f"meta:{source}"


def _load_pretrained(source: str, device: torch.device, dtype: torch.dtype) -> tuple[SeamlessM4Tv2Model, object, str]:
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = SeamlessM4Tv2Model.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise _load_error(source, exc) from exc
    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, local_files_only=True))
    return model.to(device).eval(), processor, folder_checksum(folder)


def load_model(spec: str = "demo", device: str = "auto", seed: int = 0) -> ModelBundle:
    """Load a model by spec: `demo`, `tiny-random`, `full-random`, a local folder or a hub id.

    Models are returned in eval mode (a freshly constructed SeamlessM4Tv2 is in training mode, with layer drop).
    """
    dev, dtype = pick_device_dtype(device)
    feature_extractor = SeamlessM4TFeatureExtractor()
    if spec == "tiny-random":
        model, tokenizer = build_tiny_random(seed)
        model = model.to(dev, dtype)
        checksum = state_checksum(model)
    elif spec == "full-random":
        model, tokenizer = _load_full_random(dev, dtype, seed)
        checksum = f"full-random-seed{seed}"
    else:
        source = str(DEMO_MODEL_DIR) if spec == "demo" else spec
        if spec == "demo" and not DEMO_MODEL_DIR.is_dir():
            raise ModelLoadError(
                f"the demo model is missing ({DEMO_MODEL_DIR}); train it with `neuron-atlas train-demo` "
                "or pick --model tiny-random"
            )
        loader = _load_pretrained_meta if dev.type == "meta" else _load_pretrained
        model, processor, checksum = loader(source, dev, dtype)
        tokenizer = processor.tokenizer
        feature_extractor = processor.feature_extractor
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        feature_extractor=feature_extractor,
        spec=spec,
        device=dev,
        dtype=dtype,
        checksum=checksum,
        languages=_languages_of(model),
    )


def save_bundle(bundle: ModelBundle, folder: Path) -> None:
    """Write model, generation config, tokenizer and feature extractor so `load_model(str(folder))` reloads them."""
    from transformers import SeamlessM4TProcessor

    folder.mkdir(parents=True, exist_ok=True)
    bundle.model.save_pretrained(folder)
    SeamlessM4TProcessor(feature_extractor=bundle.feature_extractor, tokenizer=bundle.tokenizer).save_pretrained(folder)
