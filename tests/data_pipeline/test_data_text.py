from data_pipeline.text import content_digest, ngrams, normalized_content, row_words, words


def test_normalized_content_ignores_case_and_whitespace_but_keeps_fields_apart():
    assert normalized_content("Add  TWO\nnumbers", "", "a+b") == normalized_content("add two numbers", "", "A+B")
    assert normalized_content("a b", "", "c") != normalized_content("a", "b", "c")
    assert content_digest("a b", "", "c") != content_digest("a", "b", "c")
    assert content_digest("a", "", "b", salt=b"0") != content_digest("a", "", "b", salt=b"1")


def test_words_and_ngrams():
    assert words("Def  F(x):\n\treturn X") == ["def", "f(x):", "return", "x"]
    assert row_words("Add one.", "x = 1", "x + 1") == ["add", "one.", "x", "=", "1", "x", "+", "1"]
    assert ngrams(["a", "b", "c", "d"], 3) == ["a b c", "b c d"]
    assert ngrams(["a", "b"], 3) == ["a b"]
