import pytest

from promptembed.templates import (
    BUILTIN_TEMPLATES,
    Template,
    normalize_sentence,
    normalize_sentence_zh,
)

PAPER = {
    "eol": ('This sentence : "{text}" means in one word:"', -1),
    "sth": ('This sentence : "{text}" means something', -1),
    "sum": ('This sentence : "{text}" can be summarized as', -1),
    "cot": ('After thinking step by step , this sentence : "{text}" means in one word:"', -2),
    "ke": (
        "The essence of a sentence is often captured by its main subjects and actions, while "
        "descriptive terms provide additional but less central details. With this in mind , "
        'this sentence : "{text}" means in one word:"',
        -2,
    ),
}


@pytest.mark.parametrize("name", list(PAPER))
def test_builtins_are_the_papers_exact_text_and_layer(name):
    text, layer = PAPER[name]
    assert BUILTIN_TEMPLATES[name].text == text
    assert BUILTIN_TEMPLATES[name].layer == layer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A man is dancing", "A man is dancing."),
        ("A man is dancing.", "A man is dancing."),
        ("Is it?", "Is it."),
        ('He said "hi"', "He said 'hi'"),  # ends in a quote: no period, quote replaced
        ("It's 'fine'", "It's 'fine'"),
        ("", ""),
        ("一个孩子在骑马。", "一个孩子在骑马。."),  # the reference rule is ASCII-only
    ],
)
def test_reference_normalisation(raw, expected):
    assert normalize_sentence(raw) == expected


def test_render_matches_reference_prompt():
    prompt = Template.parse("eol").render('Why "now"?')
    assert prompt == 'This sentence : "Why \'now\'." means in one word:"'
    assert (
        Template.parse("eol").render("x", normalize=False)
        == 'This sentence : "x" means in one word:"'
    )


def test_custom_template_splits_on_placeholder():
    t = Template.parse("Represent: {text}\nAnswer:")
    assert (t.prefix, t.suffix, t.layer, t.name) == ("Represent: ", "\nAnswer:", -1, "custom")


def test_two_placeholders_make_an_echo_template():
    t = Template.parse("A: {text} B: {text} C:")
    assert (t.prefix, t.middle, t.suffix, t.copies) == ("A: ", " B: ", " C:", 2)
    assert t.render("x", normalize=False) == "A: x B: x C:"
    assert t.text == "A: {text} B: {text} C:"
    assert Template.parse("echo").render("a dog?") == (
        'Rewrite the sentence : "a dog." , rewritten sentence : "a dog." means in one word:"'
    )


@pytest.mark.parametrize(
    ("spec", "why"), [("no placeholder", "has no"), ("{text} {text} {text}", "has 3")]
)
def test_invalid_template_says_why_and_lists_builtins(spec, why):
    with pytest.raises(ValueError, match=why) as info:
        Template.parse(spec)
    assert "eol, sth, sum, cot, ke" in str(info.value)


def test_template_must_be_a_string():
    with pytest.raises(TypeError, match="got int"):
        Template.parse(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("一个孩子在骑马", "一个孩子在骑马。"),
        ("一个孩子在骑马。", "一个孩子在骑马。"),
        ("你好吗？", "你好吗。"),
        ("他说“走”", "他说「走」"),  # ends in a quote: no period, as in the reference
        ("  空格  ", "空格。"),
        ("", ""),
    ],
)
def test_chinese_normaliser(raw, expected):
    assert normalize_sentence_zh(raw) == expected


def test_chinese_templates_render():
    rendered = Template.parse("zh-eol").render("今天天气很好")
    assert rendered == "这句话：“今天天气很好。”用一个词来概括就是：“"
    assert Template.parse("zh-ke").layer == -2 and Template.parse("zh-cot").layer == -2
