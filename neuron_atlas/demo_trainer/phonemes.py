"""Phoneme transcriptions from espeak-ng, the engine that speaks the corpus: targets of the auxiliary CTC loss.

The speech encoder learns far faster when a CTC head predicts the phonemes espeak-ng actually rendered (a small
inventory shared across languages, one symbol per sound) than when it has to predict spelling. Phonemisation runs
in a worker process that initialises its own engine (forked on Linux, as the synthesis pool is), so it never
touches a synthesis engine of this process.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from neuron_atlas.engine.example import CorpusError
from neuron_atlas.engine.tts import ESPEAK_VOICES

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
#: espeak-ng phoneme mode: ASCII phoneme names, `|` between phonemes (bits 8-23 hold the separator).
_PHONEME_MODE = ord("|") << 8
_SPLIT = re.compile(r"[|\s]+")
_STRESS = "',"


def _phonemize_all(items: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Worker: initialise espeak-ng and phonemise every (text, language) pair."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
                             _INITIALIZE_DONT_EXIT) <= 0:
        raise RuntimeError("espeak_Initialize failed in the phonemiser")
    out = []
    current = None
    for text, lang in items:
        if lang != current:
            if lib.espeak_SetVoiceByName(ESPEAK_VOICES[lang].encode()) != 0:
                raise CorpusError(f"espeak-ng has no voice for {lang!r}")
            current = lang
        buf = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        phones: list[str] = []
        while ptr.value:
            chunk = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEME_MODE)
            if chunk:
                phones += [p.lstrip(_STRESS) for p in _SPLIT.split(chunk.decode("utf-8"))]
        out.append([p for p in phones if p and p != "_"])
    return out


def phonemize(items: Sequence[tuple[str, str]]) -> list[list[str]]:
    """espeak-ng phonemes (ASCII names, stress marks dropped) of each (text, language) pair, in input order."""
    unknown = sorted({lang for _, lang in items if lang not in ESPEAK_VOICES})
    if unknown:
        raise CorpusError(f"cannot phonemise languages {unknown}; known: {sorted(ESPEAK_VOICES)}")
    if not items:
        return []
    order = sorted(range(len(items)), key=lambda i: items[i][1])
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        result = pool.submit(_phonemize_all, [items[i] for i in order]).result()
    out: list[list[str]] = [[] for _ in items]
    for i, phones in zip(order, result):
        if not phones:
            raise CorpusError(f"espeak-ng gave no phonemes for {items[i][0]!r} ({items[i][1]})")
        out[i] = phones
    return out
