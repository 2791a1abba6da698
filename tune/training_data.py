"""What a training run reads: instruction rows tokenized with the study's prompt template and, with
``data.packing``, packed; materialized, so a run's workers never wait on data work.

Nested size subsets are cut between the two steps: ``tokenized`` keeps each row's seeded
``order``, ``finished`` packs the subset or drops that column.
"""

import ray.data
from transformers import AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.packing import pack_dataset
from data_pipeline.prepare import PreparedData, load_split
from data_pipeline.splits import ORDER_COLUMN
from data_pipeline.templates import PromptTemplate, tokenize_dataset


class TrainingData:
    def __init__(self, model_path: str, data_config: DataConfig):
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.template = PromptTemplate.from_config(data_config)
        self.max_seq_len = data_config.max_seq_len
        self.packing = data_config.packing

    def tokenized_splits(self, prepared: PreparedData) -> tuple[ray.data.Dataset, ray.data.Dataset]:
        """The whole training split tokenized, still with its ``order`` for cutting nested subsets,
        and the validation split finished."""
        train = self.tokenized(load_split(prepared.train_path)).materialize()
        return train, self.finished(self.tokenized(load_split(prepared.validation_path)))

    def tokenized(self, rows: ray.data.Dataset) -> ray.data.Dataset:
        return tokenize_dataset(rows, self.tokenizer, self.max_seq_len, template=self.template)

    def finished(self, tokenized: ray.data.Dataset) -> ray.data.Dataset:
        # Materialized: a lazy step would need a CPU while the run's workers hold them all, and the
        # run would wait for it forever.
        if self.packing:
            return pack_dataset(tokenized, self.max_seq_len, self.tokenizer.pad_token_id).materialize()
        return tokenized.drop_columns([ORDER_COLUMN]).materialize()
