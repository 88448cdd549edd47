"""Model configurations defined in code: the tiny test model, the demo model's shape and the full-size (large) one."""
from __future__ import annotations

from collections.abc import Sequence

from transformers import GenerationConfig, SeamlessM4TTokenizer, SeamlessM4Tv2Config

from neuron_atlas.engine.model.tokenizer import lang_token

#: Dimensions of the tiny random model: small enough to record every unit of the built-in corpus in seconds.
TINY_DIMS: dict = dict(
    hidden_size=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    speech_encoder_layers=2,
    speech_encoder_attention_heads=2,
    speech_encoder_intermediate_size=64,
    conv_depthwise_kernel_size=7,
    t2u_encoder_layers=1,
    t2u_decoder_layers=1,
    t2u_encoder_ffn_dim=32,
    t2u_decoder_ffn_dim=32,
    t2u_encoder_attention_heads=2,
    t2u_decoder_attention_heads=2,
    t2u_variance_predictor_embed_dim=32,
    t2u_variance_predictor_hidden_dim=16,
    t2u_vocab_size=64,
    unit_hifi_gan_vocab_size=64,
    unit_embed_dim=16,
    lang_embed_dim=4,
    spkr_embed_dim=4,
    upsample_initial_channel=64,
    vocoder_num_spkrs=1,
)


def _no_dropout() -> dict:
    return dict(
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        speech_encoder_dropout=0.0,
        adaptor_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        speech_encoder_layerdrop=0.0,
        var_pred_dropout=0.0,
        t2u_variance_pred_dropout=0.0,
    )


def small_config(tokenizer: SeamlessM4TTokenizer, languages: Sequence[str], dims: dict) -> SeamlessM4Tv2Config:
    """A SeamlessM4Tv2 config with the given small dimensions, sized to `tokenizer` and `languages`.

    Random and freshly trained vocoders have no unit offset (`vocoder_offset = 0`), and position tables are
    long enough for the reference's 256-token padding.
    """
    return SeamlessM4Tv2Config(
        vocab_size=len(tokenizer),
        char_vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        max_position_embeddings=512,
        t2u_max_position_embeddings=1024,
        vocoder_num_langs=len(languages),
        vocoder_offset=0,
        **_no_dropout(),
        **dims,
    )


def full_config(vocab_size: int | None = None, languages: Sequence[str] = ()) -> SeamlessM4Tv2Config:
    """The default (large, 2.3B) SeamlessM4Tv2 architecture, evaluation-mode dropout settings."""
    extra = {"vocab_size": vocab_size} if vocab_size else {}
    return SeamlessM4Tv2Config(vocoder_offset=0, vocoder_num_langs=max(len(languages), 1), **_no_dropout(), **extra)


def generation_config(
    config: SeamlessM4Tv2Config, tokenizer: SeamlessM4TTokenizer, languages: Sequence[str]
) -> GenerationConfig:
    """Generation config with the language maps `generate(tgt_lang=...)` and speech output need.

    `_from_model_config = False` is required: otherwise `save_pretrained`/`from_pretrained` regenerate the config
    from the model config and silently drop the language maps.
    """
    gen = GenerationConfig.from_model_config(config)
    gen._from_model_config = False
    gen.decoder_start_token_id = tokenizer.eos_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.text_decoder_lang_to_code_id = {lang: tokenizer.convert_tokens_to_ids(lang_token(lang)) for lang in languages}
    gen.t2u_lang_code_to_id = {lang: i for i, lang in enumerate(languages)}
    gen.vocoder_lang_code_to_id = {lang: i for i, lang in enumerate(languages)}
    vocab = tokenizer.get_vocab()
    gen.id_to_text = {str(i): tok for tok, i in vocab.items()}
    chars = sorted({ch for tok in vocab for ch in tok})
    gen.char_to_id = {ch: i + 4 for i, ch in enumerate(chars[: config.char_vocab_size - 4])}
    gen.max_new_tokens = 128
    return gen
