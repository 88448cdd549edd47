"""FLEURS as a parallel speech corpus, aligned across languages by FLEURS's shared sentence `id`.

Each language is one FLEURS config (`FLEURS_CONFIGS`: all 102, by SeamlessM4T v2 code; the 13 the model cannot read
as text are refused, `NOT_SEAMLESS_TEXT`). For every requested language, plus English for the reference, the split
is opened with `datasets`, its audio column cast to `Audio(decode=False)`, and the rows
joined on `id`; only ids present in every requested language and in English are kept. FLEURS has several
recordings per (id, language): the first by `path` is taken, so the choice is deterministic. Text is
`raw_transcription` (cased, punctuated: what a text encoder reads) or, with `text_column="transcription"`,
FLEURS's normalised lowercase transcription; the reference is the English text of the same column and id. Audio is read with
soundfile from the stored bytes (or path), mixed to mono, resampled to 16 kHz and written atomically as WAV
under `cache_dir/fleurs/<config>/`.

`dataset` may be
  * a Hugging Face hub id (default `google/fleurs`), opened with `load_dataset(dataset, config, split=split)`;
  * a local folder `<root>` holding, per config, one of these layouts (checked in this order):
      - `<root>/<config>/` written by `DatasetDict.save_to_disk` (has `dataset_dict.json`, contains the split);
      - `<root>/<config>/<split>/` written by `Dataset.save_to_disk` (has `state.json`);
      - `<root>/<config>/<split>/*.parquet` (the hub's `refs/convert/parquet` layout);
      - `<root>/<config>/<split>.parquet`, `<split>-*.parquet` or `*-<split>.parquet` / `*-<split>-*.parquet`
        (older parquet conversions name files `fleurs-test.parquet`, `fleurs-train-00000-of-00004.parquet`).
Rows need the FLEURS columns `id`, `path`, `audio` and the text column; the others are not used.

`google/fleurs` on the hub is a loading-script dataset, which `datasets` >= 4 refuses to run; its parquet
conversion can be fetched per config, e.g. `huggingface-cli download google/fleurs --repo-type dataset
--revision refs/convert/parquet --include "fr_fr/test/*" --local-dir <root>`, and `<root>` passed as `dataset`.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError, Example
from neuron_atlas.engine.tts import resample, write_wav_atomic

#: Every FLEURS config (the 102 of google/fleurs) -> its language code as SeamlessM4T v2 spells it (ISO 639-3, the
#: codes of seamless_communication's `unity_nllb-100` card and its FLEURS evaluation mapping). The FLEURS languages
#: SeamlessM4T v2 cannot read and write as text are in NOT_SEAMLESS_TEXT.
FLEURS_CONFIGS: dict[str, str] = {
    "af_za": "afr", "am_et": "amh", "ar_eg": "arb", "as_in": "asm", "ast_es": "ast", "az_az": "azj", "be_by": "bel",
    "bg_bg": "bul", "bn_in": "ben", "bs_ba": "bos", "ca_es": "cat", "ceb_ph": "ceb", "ckb_iq": "ckb",
    "cmn_hans_cn": "cmn", "cs_cz": "ces", "cy_gb": "cym", "da_dk": "dan", "de_de": "deu", "el_gr": "ell",
    "en_us": "eng", "es_419": "spa", "et_ee": "est", "fa_ir": "pes", "ff_sn": "ful", "fi_fi": "fin", "fil_ph": "tgl",
    "fr_fr": "fra", "ga_ie": "gle", "gl_es": "glg", "gu_in": "guj", "ha_ng": "hau", "he_il": "heb", "hi_in": "hin",
    "hr_hr": "hrv", "hu_hu": "hun", "hy_am": "hye", "id_id": "ind", "ig_ng": "ibo", "is_is": "isl", "it_it": "ita",
    "ja_jp": "jpn", "jv_id": "jav", "ka_ge": "kat", "kam_ke": "kam", "kea_cv": "kea", "kk_kz": "kaz", "km_kh": "khm",
    "kn_in": "kan", "ko_kr": "kor", "ky_kg": "kir", "lb_lu": "ltz", "lg_ug": "lug", "ln_cd": "lin", "lo_la": "lao",
    "lt_lt": "lit", "luo_ke": "luo", "lv_lv": "lvs", "mi_nz": "mri", "mk_mk": "mkd", "ml_in": "mal", "mn_mn": "khk",
    "mr_in": "mar", "ms_my": "zsm", "mt_mt": "mlt", "my_mm": "mya", "nb_no": "nob", "ne_np": "npi", "nl_nl": "nld",
    "nso_za": "nso", "ny_mw": "nya", "oc_fr": "oci", "om_et": "gaz", "or_in": "ory", "pa_in": "pan", "pl_pl": "pol",
    "ps_af": "pbt", "pt_br": "por", "ro_ro": "ron", "ru_ru": "rus", "sd_in": "snd", "sk_sk": "slk", "sl_si": "slv",
    "sn_zw": "sna", "so_so": "som", "sr_rs": "srp", "sv_se": "swe", "sw_ke": "swh", "ta_in": "tam", "te_in": "tel",
    "tg_tj": "tgk", "th_th": "tha", "tr_tr": "tur", "uk_ua": "ukr", "umb_ao": "umb", "ur_pk": "urd", "uz_uz": "uzn",
    "vi_vn": "vie", "wo_sn": "wol", "xh_za": "xho", "yo_ng": "yor", "yue_hant_hk": "yue", "zu_za": "zul",
}
#: FLEURS languages SeamlessM4T v2 cannot read and write as text (code -> why), from the supported-language table of
#: seamless_communication's docs/m4t/README.md. Every task here reads or writes a language's text (asr, t2tt, the en->X
#: targets), so a corpus naming one of them is refused.
NOT_SEAMLESS_TEXT: dict[str, str] = {
    **{lang: "SeamlessM4T v2 takes it as speech input only (no text input or output)"
       for lang in ("ast", "kam", "kea", "ltz", "oci", "xho")},
    **{lang: "not a SeamlessM4T v2 language (no text language token)"
       for lang in ("hau", "lin", "mri", "nso", "umb", "wol")},
    "ful": "SeamlessM4T v2 has only Nigerian Fulfulde (fuv); FLEURS's ff_sn is Fula recorded in Senegal, not assumed "
           "to be the same language",
}
#: The FLEURS languages SeamlessM4T v2 supports as speech and text, in FLEURS config order (89 of 102).
SEAMLESS_FLEURS_LANGUAGES: tuple[str, ...] = tuple(
    lang for lang in FLEURS_CONFIGS.values() if lang not in NOT_SEAMLESS_TEXT)
ENGLISH_CONFIG = "en_us"
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "path", "audio")
#: FLEURS text columns a corpus may be built from.
TEXT_COLUMNS: tuple[str, ...] = ("raw_transcription", "transcription")
#: Bump when the audio conversion changes, so cached files are rewritten.
PIPELINE_VERSION = "fleurs-1"


def fleurs_languages() -> dict[str, str]:
    """Seamless language code -> FLEURS config, from the current `FLEURS_CONFIGS`."""
    return {lang: config for config, lang in FLEURS_CONFIGS.items()}


def fleurs_config(lang: str) -> str:
    """The FLEURS config holding `lang` (a Seamless code); CorpusError naming the known codes otherwise, or why a
    FLEURS language the model cannot read as text is refused."""
    configs = fleurs_languages()
    if lang in NOT_SEAMLESS_TEXT:
        raise CorpusError(f"FLEURS language {lang!r} (config {configs[lang]}) cannot be used: {NOT_SEAMLESS_TEXT[lang]}")
    if lang not in configs:
        raise CorpusError(f"FLEURS has no configured language {lang!r}; known: "
                          f"{', '.join(sorted(SEAMLESS_FLEURS_LANGUAGES))}")
    return configs[lang]


def _open_local(root: Path, config: str, split: str, hf_cache: Path) -> datasets.Dataset:
    folder = root / config
    if not folder.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise CorpusError(f"FLEURS config {config!r} not found in {root}: no folder {folder} "
                          f"(folders present: {available})")
    if (folder / "dataset_dict.json").is_file():
        splits = datasets.load_from_disk(str(folder))
        if split not in splits:
            raise CorpusError(f"FLEURS config {config!r} in {folder} has no split {split!r}; "
                              f"splits: {sorted(splits)}")
        return splits[split]
    split_dir = folder / split
    if (split_dir / "state.json").is_file():
        return datasets.load_from_disk(str(split_dir))
    if split_dir.is_dir():
        files = sorted(split_dir.glob("*.parquet"))
    else:
        patterns = (f"{split}.parquet", f"{split}-*.parquet", f"*-{split}.parquet", f"*-{split}-*.parquet")
        files = sorted({f for pattern in patterns for f in folder.glob(pattern)})
    if not files:
        raise CorpusError(f"FLEURS config {config!r}: no split {split!r} in {folder} (expected a save_to_disk "
                          f"folder or parquet files; see precompute.corpus.fleurs for the layouts)")
    return datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split,
                                 cache_dir=str(hf_cache))


def _open_split(dataset: str, config: str, split: str, hf_cache: Path, text_column: str) -> datasets.Dataset:
    root = Path(dataset).expanduser()
    try:
        if root.is_dir():
            table = _open_local(root, config, split, hf_cache)
        elif dataset.startswith(("/", ".", "~")):
            raise CorpusError(f"FLEURS dataset folder not found: {dataset}")
        else:
            table = datasets.load_dataset(dataset, config, split=split)
    except CorpusError:
        raise
    except Exception as exc:
        raise CorpusError(f"cannot open FLEURS config {config!r} split {split!r} from {dataset!r}: "
                          f"{type(exc).__name__}: {exc}. Without hub access, point `dataset` at a local folder "
                          "(layouts in precompute.corpus.fleurs)") from None
    missing = [column for column in (*REQUIRED_COLUMNS, text_column) if column not in table.column_names]
    if missing:
        raise CorpusError(f"FLEURS config {config!r} split {split!r} from {dataset!r}: missing column(s) "
                          f"{', '.join(missing)}")
    try:
        return table.cast_column("audio", datasets.Audio(decode=False))
    except (TypeError, ValueError) as exc:
        raise CorpusError(f"FLEURS config {config!r}: column 'audio' is not audio ({exc})") from None


def _first_recordings(table: datasets.Dataset, config: str, text_column: str) -> dict[int, tuple[str, int, str]]:
    """FLEURS id -> (path, row, text) of its first recording by path (then row)."""
    columns = table.select_columns(["id", "path", text_column]).to_dict()
    first: dict[int, tuple[str, int, str]] = {}
    for row, (sid, path, text) in enumerate(zip(columns["id"], columns["path"], columns[text_column])):
        if sid is None:
            raise CorpusError(f"FLEURS config {config!r}: row {row} has no id")
        key, candidate = int(sid), (path or "", row, text)
        if key not in first or candidate[:2] < first[key][:2]:
            first[key] = candidate
    return first


def _audio_bytes(entry: dict, config: str, sid: int) -> bytes:
    if entry.get("bytes"):
        return entry["bytes"]
    path = entry.get("path")
    if path and Path(path).is_file():
        return Path(path).read_bytes()
    raise CorpusError(f"FLEURS config {config!r} id {sid}: audio has neither bytes nor a readable path ({path!r})")


def _convert(data: bytes, config: str, sid: int) -> np.ndarray:
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise CorpusError(f"FLEURS config {config!r} id {sid}: unreadable audio ({exc})") from None
    if samples.shape[0] == 0:
        raise CorpusError(f"FLEURS config {config!r} id {sid}: audio has no frames")
    return resample(samples.mean(axis=1), rate)


def load_fleurs(cache_dir: Path, languages: Sequence[str] = CORPUS_LANGUAGES, dataset: str = "google/fleurs",
                split: str = "test", max_sentences: int | None = None, progress: bool = True,
                text_column: str = "raw_transcription") -> list[Example]:
    """FLEURS sentences present in every requested language (and English), as Examples with 16 kHz WAV files.

    Ordered by FLEURS id, then language in the requested order; `max_sentences` keeps the lowest ids.
    """
    if text_column not in TEXT_COLUMNS:
        raise CorpusError(f"FLEURS text column must be one of {TEXT_COLUMNS}, got {text_column!r}")
    languages = list(languages)
    if not languages:
        raise CorpusError("FLEURS: no languages requested")
    if max_sentences is not None and (isinstance(max_sentences, bool) or not isinstance(max_sentences, int)
                                      or max_sentences < 1):
        raise CorpusError(f"max_sentences must be a positive integer, got {max_sentences!r}")
    configs = {lang: fleurs_config(lang) for lang in languages}
    configs.setdefault("eng", ENGLISH_CONFIG)
    cache_dir = Path(cache_dir).resolve()
    tables = {lang: _open_split(dataset, config, split, cache_dir / "hf-datasets", text_column)
              for lang, config in configs.items()}
    recordings = {lang: _first_recordings(table, configs[lang], text_column) for lang, table in tables.items()}

    common = set.intersection(*(set(found) for found in recordings.values()))
    if not common:
        counts = ", ".join(f"{configs[lang]}: {len(found)}" for lang, found in recordings.items())
        raise CorpusError(f"FLEURS split {split!r} from {dataset!r}: no sentence id is present in all of "
                          f"{', '.join(configs.values())} (ids per config: {counts})")
    ids = sorted(common)[:max_sentences] if max_sentences is not None else sorted(common)

    examples = []
    with tqdm(total=len(ids) * len(languages), desc="preparing FLEURS audio", unit="clip",
              disable=not progress) as bar:
        for sid in ids:
            reference = recordings["eng"][sid][2]
            if not reference or not reference.strip():
                raise CorpusError(f"FLEURS config {ENGLISH_CONFIG!r} id {sid}: empty {text_column}")
            for lang in languages:
                config = configs[lang]
                path, row, text = recordings[lang][sid]
                if not text or not text.strip():
                    raise CorpusError(f"FLEURS config {config!r} id {sid}: empty {text_column}")
                data = _audio_bytes(tables[lang][row]["audio"], config, sid)
                digest = hashlib.sha256(PIPELINE_VERSION.encode() + data).hexdigest()[:16]
                target = cache_dir / "fleurs" / config / f"{sid}_{digest}.wav"
                if not target.exists():
                    write_wav_atomic(target, _convert(data, config, sid))
                examples.append(Example(
                    id=f"fleurs:{sid}:{lang}", sentence_id=f"fleurs-{sid}", lang=lang, text=text.strip(),
                    audio_path=target, reference=reference.strip(), voice=None,
                    meta={"source": "fleurs", "config": config, "split": split, "fleurs_path": path, "text_column": text_column}))
                bar.update()
    return examples
