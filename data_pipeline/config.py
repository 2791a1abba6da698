"""Configuration of the instruction-data pipeline."""

from typing import Literal

import jinja2
import jinja2.meta
from pydantic import BaseModel, Field, field_validator, model_validator

JINJA_VARIABLES = ("instruction", "input", "system")  # what a jinja_template is rendered with
TargetColumn = Literal["instruction", "input", "output", "difficulty", "topic", "language"]
CodeLanguage = Literal["python", "cpp", "java", "javascript"]  # code_languages.LANGUAGES


class NearDedupConfig(BaseModel, extra="forbid"):
    """MinHash LSH near-duplicate removal over word shingles of a row's normalized text."""

    threshold: float = Field(0.85, gt=0, lt=1)  # estimated Jaccard similarity that makes a duplicate
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_size: int = Field(5, gt=0)  # words per shingle
    seed: int = 1  # of the MinHash permutations, not of the data split


class DecontaminationConfig(BaseModel, extra="forbid"):
    """Drop training rows sharing word n-grams with any evaluation benchmark item."""

    ngram_size: int = Field(13, gt=0)
    min_shared_ngrams: int = Field(1, gt=0)  # distinct n-grams shared with one item to drop a row


class DataConfig(BaseModel, extra="forbid"):
    """Where the instruction data lives and how to clean, split and format it."""

    # A file or directory; with format hf_hub, a Hugging Face Hub dataset id ("user/name").
    path: str = ""  # empty: the study fills it in (the embedded default's instruction set)
    # json: a JSON array of objects per file (read as it streams; e.g. CodeAlpaca's code_alpaca_20k.json).
    # auto reads a .json file as a JSON array if it starts with '[', else as JSON Lines.
    # hf_disk: a datasets.save_to_disk directory; hf_hub: downloaded (needs a network), never inferred.
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "hf_disk", "hf_hub"] = "auto"
    split: str = "train"  # the split of an hf_hub dataset
    # Source column name -> pipeline column name; difficulty/topic/language are read only if mapped.
    # JSON files whose first record has OpenAI's "messages" ({role, content}) or ShareGPT's
    # "conversations" ({from, value}) and no instruction field hold chat records (chat_records):
    # the user turn is the instruction, the assistant turn the output, the system turn the system
    # column. Only single-turn conversations are read: a multi-turn one is a bad row (on_bad_row):
    # split it into single-turn records, or skip such records.
    columns: dict[str, TargetColumn] = {}
    # error: a malformed row stops the run, naming file and line; skip: it is counted and dropped.
    on_bad_row: Literal["error", "skip"] = "error"
    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(4000, gt=0)
    # Bounds on instruction+input+output tokens (the tokenizer given to prepare, else words).
    min_tokens: int = Field(0, ge=0)
    max_tokens: int | None = Field(None, gt=0)
    # Python code in the response (fenced or whole) must parse; rows in other languages are exempt.
    python_must_parse: bool = False
    # Code in every language with a grammar (python, cpp, java, javascript) must parse, its language
    # from the fence tag, else the row's language column, else any of them (see code_languages).
    code_must_parse: bool = False
    # Keep only responses whose code is in these languages (tag, language column, else detected).
    languages: list[CodeLanguage] | None = Field(None, min_length=1)
    drop_prose_only: bool = False  # drop responses with no code at all
    dedup: bool = True
    near_dedup: NearDedupConfig | None = None
    # Needs benchmark texts passed to prepare_instruction_data.
    decontamination: DecontaminationConfig | None = None
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    # alpaca: the Alpaca prompt; chat: the tokenizer's chat template; jinja: ``jinja_template``,
    # rendered with ``instruction``, ``input`` and ``system``, the response appended. A row's system
    # prompt (chat records' system turn) goes before the Alpaca prompt and a blank line, or in a
    # system message; rows without one are rendered as if there were no system column.
    template: Literal["alpaca", "chat", "jinja"] = "alpaca"
    jinja_template: str | None = None
    max_seq_len: int = Field(256, gt=0)
    # Several tokenized examples per max_seq_len sequence, position_ids restarting for each.
    packing: bool = False

    @field_validator("jinja_template")
    @classmethod
    def _check_jinja_syntax(cls, source: str | None) -> str | None:
        if source is not None:
            try:
                parsed = jinja2.Environment().parse(source)
            except jinja2.TemplateSyntaxError as error:
                raise ValueError(f"not a valid Jinja2 template (line {error.lineno}: {error.message})") from None
            unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - set(JINJA_VARIABLES))
            if unknown:
                raise ValueError(f"uses undefined variables {unknown}; the variables are {list(JINJA_VARIABLES)}")
        return source

    @model_validator(mode="after")
    def _check_consistency(self) -> "DataConfig":
        for low, high in (("min_chars", "max_chars"), ("min_tokens", "max_tokens")):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if high_value is not None and low_value > high_value:
                raise ValueError(f"{low} ({low_value}) must not exceed {high} ({high_value})")
        if (self.template == "jinja") != (self.jinja_template is not None):
            raise ValueError(
                f"template is {self.template!r} and jinja_template is "
                f"{'not set' if self.jinja_template is None else 'set'}: set jinja_template exactly "
                "when template is 'jinja' (the allowed templates are 'alpaca', 'chat', 'jinja')"
            )
        if "split" in self.model_fields_set and self.format != "hf_hub":
            raise ValueError(f"split is read only with format 'hf_hub' (format is {self.format!r})")
        if self.near_dedup is not None and not self.dedup:
            raise ValueError("near_dedup needs dedup: true (exact copies are removed first)")
        targets = list(self.columns.values())
        for target in set(targets):
            if targets.count(target) > 1:
                sources = sorted(s for s, t in self.columns.items() if t == target)
                raise ValueError(f"columns maps {sources} all to {target!r}")
        return self
