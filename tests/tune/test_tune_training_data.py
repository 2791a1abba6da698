"""What a training run reads, with and without packing."""

import pytest

from data_pipeline.config import DataConfig
from data_pipeline.prepare import load_split, prepare_instruction_data
from data_pipeline.templates import IGNORE_INDEX
from tune.training_data import TrainingData


@pytest.fixture(scope="module")
def train_rows(ray_cluster, embedded_world, tmp_path_factory):
    prepared = prepare_instruction_data(DataConfig(path=embedded_world["instructions"]),
                                        str(tmp_path_factory.mktemp("prepared")))
    return load_split(prepared.train_path).materialize()


def trained_tokens(rows: list[dict]) -> int:
    return sum(int(label != IGNORE_INDEX) for row in rows for label in row["labels"])


def test_packed_rows_hold_several_examples_and_train_on_the_same_tokens(train_rows, tiny_model):
    plain = TrainingData(tiny_model, DataConfig(max_seq_len=512))
    packed = TrainingData(tiny_model, DataConfig(max_seq_len=512, packing=True))

    one_per_row = plain.finished(plain.tokenized(train_rows)).take_all()
    several_per_row = packed.finished(packed.tokenized(train_rows)).take_all()

    assert len(one_per_row) == train_rows.count() and "order" not in one_per_row[0]
    assert len(several_per_row) < len(one_per_row) / 2
    assert all(len(row["input_ids"]) == 512 and "position_ids" in row for row in several_per_row)
    assert trained_tokens(several_per_row) == trained_tokens(one_per_row)
