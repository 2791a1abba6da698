"""What the training loop feeds the model: padded rows trimmed, packed rows kept apart."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from train.finetune import model_inputs

IGNORE = -100


def test_padded_rows_lose_the_padding_past_the_longest_row():
    batch = {"input_ids": torch.tensor([[5, 6, 7, 0, 0], [5, 6, 0, 0, 0]]),
             "labels": torch.tensor([[IGNORE, 6, 7, IGNORE, IGNORE], [IGNORE, 6, IGNORE, IGNORE, IGNORE]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])}
    inputs = model_inputs(batch)
    assert inputs["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]]
    assert inputs["attention_mask"].shape == (2, 3) and "use_cache" not in inputs


def test_a_packed_row_trains_on_each_example_as_if_it_were_alone():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=16)).eval()
    first, second = [3, 9, 4, 7], [8, 2, 5]
    # Two examples and a padding segment, as data_pipeline.packing lays them out.
    packed = {"input_ids": torch.tensor([first + second + [0]]),
              "labels": torch.tensor([[IGNORE, *first[1:], IGNORE, *second[1:], IGNORE]]),
              "position_ids": torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0]])}
    with torch.no_grad():
        loss = model(**model_inputs(packed)).loss
        alone = [model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss for ids in (first, second)]
    # Token-weighted: 3 predicted tokens in the first example, 2 in the second.
    torch.testing.assert_close(loss, (3 * alone[0] + 2 * alone[1]) / 5)
