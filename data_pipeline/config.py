"""Configuration of the instruction-data pipeline."""

from typing import Literal

from pydantic import BaseModel, Field, model_validator

TargetColumn = Literal["instruction", "input", "output"]


class DataConfig(BaseModel, extra="forbid"):
    """Where the instruction data lives and how to clean, split and format it."""

    path: str = ""  # empty: the study fills it in (the embedded default's instruction set)
    format: Literal["auto", "jsonl", "parquet", "hf_disk"] = "auto"
    # Source column name -> pipeline column name.
    columns: dict[str, TargetColumn] = {}
    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(4000, gt=0)
    dedup: bool = True
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    template: Literal["alpaca"] = "alpaca"
    max_seq_len: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _check_consistency(self) -> "DataConfig":
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})"
            )
        targets = list(self.columns.values())
        for target in set(targets):
            if targets.count(target) > 1:
                sources = sorted(s for s, t in self.columns.items() if t == target)
                raise ValueError(f"columns maps {sources} all to {target!r}")
        return self
