"""User corpora described by a manifest file (JSONL or CSV), validated row by row.

Columns: `id`, `sentence_id`, `lang`, `text`, `audio` (a WAV/FLAC/... path; relative paths are resolved against
the manifest's folder) and optionally `reference` (the English text) and `voice` (a speaker label). A row
without a reference takes the text of the English (`eng`) row with the same `sentence_id`; English rows default
to their own text. Other columns are kept in `Example.meta`. Every problem is reported as a CorpusError naming
the file, line and field.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Collection
from pathlib import Path

import soundfile as sf

from neuron_atlas.engine.example import CorpusError, Example

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "sentence_id", "lang", "text", "audio")
OPTIONAL_COLUMNS: tuple[str, ...] = ("reference", "voice")
ENGLISH = "eng"


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise CorpusError(f"{path}: line {line_no}: expected a JSON object, got {type(row).__name__}")
            missing = [column for column in REQUIRED_COLUMNS if column not in row]
            if missing:
                raise CorpusError(f"{path}: line {line_no}: missing column(s) {', '.join(missing)}")
            rows.append((line_no, row))
    return rows


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if header and missing:
            raise CorpusError(f"{path}: line 1: missing column(s) {', '.join(missing)} in the header")
        rows = []
        for row in reader:
            if None in row:
                raise CorpusError(f"{path}: line {reader.line_num}: more fields than header columns")
            if all(not (value or "").strip() for value in row.values()):
                continue
            rows.append((reader.line_num, row))
    return rows


def _field(path: Path, line_no: int, row: dict, column: str, required: bool = True) -> str:
    value = row.get(column)
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(f"{path}: line {line_no}: field {column!r} must be a string, got {value!r}")
    value = str(value).strip()
    if required and not value:
        raise CorpusError(f"{path}: line {line_no}: field {column!r} is empty")
    return value


def _check_audio(path: Path, line_no: int, audio: Path) -> None:
    if not audio.is_file():
        raise CorpusError(f"{path}: line {line_no}: field 'audio': file not found: {audio}")
    try:
        info = sf.info(str(audio))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise CorpusError(f"{path}: line {line_no}: field 'audio': unreadable or corrupt audio file {audio} "
                          f"({exc})") from None
    if info.frames <= 0:
        raise CorpusError(f"{path}: line {line_no}: field 'audio': audio file {audio} has no frames")


def load_manifest(path: Path, known_languages: Collection[str]) -> list[Example]:
    """Read and validate a JSONL (`.jsonl`, `.ndjson`) or CSV (`.csv`) manifest into Examples, in file order."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    else:
        raise CorpusError(f"{path}: unsupported manifest type {suffix!r}; use .jsonl, .ndjson or .csv")
    if not rows:
        raise CorpusError(f"{path}: empty corpus: the manifest has no rows")

    parsed = []
    seen: dict[str, int] = {}
    for line_no, row in rows:
        example_id = _field(path, line_no, row, "id")
        if example_id in seen:
            raise CorpusError(f"{path}: line {line_no}: duplicate id {example_id!r} (first on line {seen[example_id]})")
        seen[example_id] = line_no
        sentence_id = _field(path, line_no, row, "sentence_id")
        lang = _field(path, line_no, row, "lang")
        if lang not in known_languages:
            raise CorpusError(f"{path}: line {line_no}: field 'lang': unknown language {lang!r}; known: "
                              f"{', '.join(sorted(known_languages))}")
        text = _field(path, line_no, row, "text")
        audio = Path(_field(path, line_no, row, "audio")).expanduser()
        if not audio.is_absolute():
            audio = path.parent / audio
        _check_audio(path, line_no, audio)
        reference = _field(path, line_no, row, "reference", required=False)
        voice = _field(path, line_no, row, "voice", required=False) or None
        meta = {key: value for key, value in row.items() if key not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
        parsed.append((line_no, example_id, sentence_id, lang, text, audio, reference, voice, meta))

    english: dict[str, str] = {}
    for _, _, sentence_id, lang, text, _, _, _, _ in parsed:
        if lang == ENGLISH:
            english.setdefault(sentence_id, text)
    examples = []
    for line_no, example_id, sentence_id, lang, text, audio, reference, voice, meta in parsed:
        if not reference:
            if sentence_id not in english:
                raise CorpusError(f"{path}: line {line_no}: field 'reference' is empty and there is no English "
                                  f"({ENGLISH}) row with sentence_id {sentence_id!r} to take it from")
            reference = english[sentence_id]
        examples.append(Example(id=example_id, sentence_id=sentence_id, lang=lang, text=text,
                                audio_path=audio.resolve(), reference=reference, voice=voice,
                                meta={"source": "manifest", **meta}))
    return examples
