"""The five recording tasks (directions) and the items they are run on: which input, which target, which label."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuron_atlas.engine.example import CorpusError, Example

PIVOT = "eng"


@dataclass(frozen=True)
class TaskDef:
    """A direction: input modality, whether it is English->X, and how target and label are chosen."""

    name: str
    modality: str  # "speech" | "text"
    en2x: bool
    asr: bool = False

    @property
    def role(self) -> str:
        """X->en tasks give representation units, en->X tasks give control units (the paper's terms)."""
        return "control" if self.en2x else "representation"


TASKS: dict[str, TaskDef] = {
    "asr": TaskDef("asr", "speech", en2x=False, asr=True),
    "s2tt": TaskDef("s2tt", "speech", en2x=False),
    "t2tt": TaskDef("t2tt", "text", en2x=False),
    "en2x_s2tt": TaskDef("en2x_s2tt", "speech", en2x=True),
    "en2x_t2tt": TaskDef("en2x_t2tt", "text", en2x=True),
}


@dataclass(frozen=True)
class TaskItem:
    """One recorded example of a task: the input example, the source and target language and the label language."""

    task: str
    index: int
    example: Example
    src_lang: str
    tgt_lang: str
    label: str
    reference: str

    @property
    def modality(self) -> str:
        return TASKS[self.task].modality


def task_items(task: str, examples: Sequence[Example], languages: Sequence[str]) -> list[TaskItem]:
    """Items of `task` over a parallel corpus, grouped by label language then sentence (a stable order).

    asr runs on every language; X->en tasks on every non-English language; en->X tasks feed the English example of a
    sentence and target each non-English language that has the sentence (its text is the reference).
    """
    if task not in TASKS:
        raise CorpusError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    tdef = TASKS[task]
    by_key = {(e.sentence_id, e.lang): e for e in examples}
    items: list[TaskItem] = []
    for lang in languages:
        if lang == PIVOT and not tdef.asr:
            continue
        rows = sorted((e for e in examples if e.lang == lang), key=lambda e: (e.sentence_id, e.id))
        for ex in rows:
            if tdef.asr:
                items.append(TaskItem(task, 0, ex, lang, lang, lang, ex.text))
            elif not tdef.en2x:
                items.append(TaskItem(task, 0, ex, lang, PIVOT, lang, ex.reference))
            else:
                src = by_key.get((ex.sentence_id, PIVOT))
                if src is not None:
                    items.append(TaskItem(task, 0, src, PIVOT, lang, lang, ex.text))
    if tdef.modality == "speech":
        missing = [it.example.id for it in items if it.example.audio_path is None]
        if missing:
            raise CorpusError(f"task {task} needs speech but {len(missing)} examples have no audio, e.g. {missing[0]!r}")
    return [TaskItem(it.task, i, it.example, it.src_lang, it.tgt_lang, it.label, it.reference) for i, it in enumerate(items)]
