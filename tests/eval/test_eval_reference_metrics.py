import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from eval.reference_metrics import bleu, codebertscore, codebleu, sentence_bleu

SHORT = "return a + b"
LONG = "return a + b * c"
CAT = "the cat sat on the mat"
CAT_REFERENCE = "the cat is on the mat"


def test_identical_text_has_bleu_100():
    assert bleu([LONG, CAT], [LONG, CAT]) == pytest.approx(100.0)
    assert sentence_bleu(CAT, CAT) == pytest.approx(100.0)


def test_sentence_bleu_with_only_the_brevity_penalty():
    # Every 1- to 4-gram of the 4-token candidate is in the 6-token reference.
    assert sentence_bleu(SHORT, LONG) == pytest.approx(100 * math.exp(1 - 6 / 4))


def test_sentence_bleu_smooths_an_order_without_match():
    # Matched/total n-grams: 1-grams 5/6, 2-grams 3/5, 3-grams 1/4, 4-grams 0/3;
    # exp smoothing counts the empty order as 1 / (2 * 3). Equal lengths: no penalty.
    assert sentence_bleu(CAT, CAT_REFERENCE) == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25)


def test_corpus_bleu_sums_counts_over_sentences():
    # Both pairs above: 1-grams 9/10, 2-grams 6/8, 3-grams 3/6, 4-grams 1/4;
    # 10 candidate tokens for 12 reference tokens.
    expected = 100 * math.exp(1 - 12 / 10) * (9 / 10 * 6 / 8 * 3 / 6 * 1 / 4) ** 0.25
    assert bleu([SHORT, CAT], [LONG, CAT_REFERENCE]) == pytest.approx(expected)


def test_bleu_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 candidates for 1 references"):
        bleu([SHORT, CAT], [LONG])


IDENTICAL_CODE = {
    "python": "def add(a, b):\n    total = a + b\n    return total\n",
    "cpp": "int add(int a, int b) { int total = a + b; return total; }",
    "java": "class A { int add(int a, int b) { int total = a + b; return total; } }",
    "javascript": "function add(a, b) { let total = a + b; return total; }",
    "js": "function add(a, b) { let total = a + b; return total; }",
}


@pytest.mark.parametrize("language", sorted(IDENTICAL_CODE))
def test_identical_code_has_codebleu_1(language):
    code = IDENTICAL_CODE[language]
    scores = codebleu([code], [code], language)
    assert scores == pytest.approx({
        "codebleu": 1.0, "ngram_match_score": 1.0, "weighted_ngram_match_score": 1.0,
        "syntax_match_score": 1.0, "dataflow_match_score": 1.0,
    })


def test_codebleu_components_of_a_different_candidate():
    candidate = "def add(a, b):\n    return a + b\n"
    reference = "def add(a, b):\n    return a + b * 2\n"
    scores = codebleu([candidate], [reference], "python")
    # Whitespace tokens: the candidate's 7 tokens are a prefix of the reference's 9,
    # so every n-gram matches and only the brevity penalty is left.
    assert scores["ngram_match_score"] == pytest.approx(math.exp(1 - 9 / 7))
    # Both data flows (b, a -> return value) are in the candidate.
    assert scores["dataflow_match_score"] == pytest.approx(1.0)
    assert 0 < scores["syntax_match_score"] < 1
    components = [value for key, value in scores.items() if key != "codebleu"]
    assert scores["codebleu"] == pytest.approx(sum(components) / 4)


def test_codebleu_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="unsupported language 'cobol'"):
        codebleu(["x"], ["x"], "cobol")


def test_codebleu_names_the_missing_grammar_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tree_sitter_java", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install 'tree-sitter-java"):
        codebleu(["class A {}"], ["class A {}"], "java")


CORPUS = [
    "def add ( a , b ) : return a + b",
    "def mul ( x , y ) : return x * y",
    "for i in range ( n ) : print ( i )",
]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    """A random 2-layer BERT and a word-level tokenizer trained on CORPUS, saved like a hub checkpoint."""
    path = tmp_path_factory.mktemp("encoder")
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    ).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    # What save_pretrained writes, without it: it imports deepspeed (seconds) when that is installed.
    config.save_pretrained(path)
    save_file(BertModel(config).state_dict(), path / "model.safetensors")
    return str(path)


def _numpy_bertscore(model_path: str, candidate: str, reference: str, layer: int) -> tuple[float, float, float]:
    """BERTScore by hand: one text at a time, [CLS] and [SEP] sliced off."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_path)
    model = BertModel.from_pretrained(model_path).eval()

    def unit_tokens(text: str) -> np.ndarray:
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states[layer]
        tokens = hidden[0, 1:-1].numpy().astype(np.float64)
        return tokens / np.linalg.norm(tokens, axis=1, keepdims=True)

    similarity = unit_tokens(candidate) @ unit_tokens(reference).T
    precision, recall = similarity.max(axis=1).mean(), similarity.max(axis=0).mean()
    return precision, recall, 2 * precision * recall / (precision + recall)


def test_codebertscore_of_identical_code_is_1(tiny_encoder):
    scores = codebertscore(CORPUS, CORPUS, tiny_encoder)
    for score in scores:
        assert score == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0}, abs=1e-5)


@pytest.mark.parametrize("layer", [None, 1])
def test_codebertscore_matches_a_hand_computation(tiny_encoder, layer):
    candidate, reference = "def add ( a , b ) : return a * b", "def add ( x , y ) : print ( x + y )"
    # Batched with a longer pair, so padding must be masked out.
    scores = codebertscore([candidate, CORPUS[2]], [reference, CORPUS[0]], tiny_encoder, layer=layer)
    precision, recall, f1 = _numpy_bertscore(tiny_encoder, candidate, reference, 2 if layer is None else layer)
    assert scores[0] == pytest.approx({"precision": precision, "recall": recall, "f1": f1}, abs=1e-5)
    assert precision != pytest.approx(recall, abs=1e-3)


def test_codebertscore_of_empty_code_is_0(tiny_encoder):
    assert codebertscore([""], [CORPUS[0]], tiny_encoder) == [{"precision": 0.0, "recall": 0.0, "f1": 0.0}]


def test_codebertscore_asks_for_a_downloaded_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="download the model"):
        codebertscore(["x"], ["x"], str(tmp_path / "codebert-python"))
