import numpy as np
import pytest
import yaml

from training.labelling.combine import combine
from training.data.corpus import segment_article
from training.core.errors import InputError
from training.labelling.rules import ABSTAIN, RuleSet, apply_rules, load_rules

LABELS = {
    "diplomatic_contact": {"description": "contact", "rules": [
        {"name": "talks", "keywords": ["talks", "phone call"]}]},
    "drill": {"description": "exercise", "rules": [
        {"name": "drills", "pattern": r"\bdrills?\b", "unless": r"\bfire drill\b"}]},
    "boilerplate": {"description": "chrome", "rules": [
        {"name": "short_no_stop", "max_words": 3, "terminal_punctuation": False},
        {"name": "recurring", "min_recurrence": 2},
        {"name": "near_chrome", "max_words": 6, "next_to_label": "boilerplate", "terminal_punctuation": False},
    ]},
    "other": {"description": "rest", "rules": []},
}


def ruleset(**changes) -> RuleSet:
    raw = {"default": "other", "tie_order": ["diplomatic_contact", "drill", "boilerplate", "other"],
           "labels": LABELS, **changes}
    return RuleSet.model_validate(raw)


def test_votes_abstentions_and_veto():
    rs = ruleset()
    sentences = segment_article("a", "Talks on the drills began today.\nA fire drill was held in the school.\n"
                                     "Nothing to see here at all.")
    matrix = apply_rules(rs, sentences)
    names = rs.label_names
    assert matrix.shape == (3, 5)
    assert matrix[0, 0] == names.index("diplomatic_contact") and matrix[0, 1] == names.index("drill")
    assert (matrix[1] == ABSTAIN).all()  # "fire drill" vetoed, sentence ends with a full stop
    assert (matrix[2] == ABSTAIN).all()


def test_majority_tie_order_and_default():
    rs = ruleset()
    names = rs.label_names
    dc, dr, bp = names.index("diplomatic_contact"), names.index("drill"), names.index("boilerplate")
    matrix = np.array([[dc, dr, -1, -1, -1],  # tie: diplomatic_contact first in tie order
                       [-1, dr, bp, bp, -1],  # boilerplate wins 2:1
                       [-1, -1, -1, -1, -1]])  # no vote: default
    out = combine(matrix, names, rs.tie_order, rs.default)
    assert [names[i] for i in out.labels] == ["diplomatic_contact", "boilerplate", "other"]
    flipped = combine(matrix, names, ["drill", "diplomatic_contact", "boilerplate", "other"], rs.default)
    assert names[flipped.labels[0]] == "drill"
    expected = np.zeros((3, len(names)))  # each label's share of the votes; no vote: all on the default
    expected[0, [dc, dr]] = 1 / 2
    expected[1, [dr, bp]] = 1 / 3, 2 / 3
    expected[2, names.index("other")] = 1.0
    assert np.allclose(out.probabilities, expected) and np.allclose(flipped.probabilities, expected)


def test_context_rules_shape_recurrence_and_neighbours():
    rs = ruleset()
    page_a = segment_article("a", "Share this\nRussian troops moved to the border on Monday.\nSign up now\nTop")
    page_b = segment_article("b", "Share this\nA long and ordinary sentence that ends properly here.")
    sentences = page_a + page_b
    matrix = apply_rules(rs, sentences)
    cols = {rule.name: i for i, (_, rule) in enumerate(rs.rules)}
    bp = rs.label_names.index("boilerplate")
    assert matrix[0, cols["recurring"]] == bp and matrix[4, cols["recurring"]] == bp
    assert matrix[1, cols["recurring"]] == ABSTAIN
    assert matrix[2, cols["short_no_stop"]] == bp  # 3 words, no stop
    assert matrix[3, cols["near_chrome"]] == bp  # "Top": next to "Sign up now"
    assert matrix[1, cols["near_chrome"]] == ABSTAIN  # ends with a stop
    # neighbours never cross article boundaries: "Top" (a:3) and "Share this" (b:0) are adjacent rows
    assert matrix[5, cols["near_chrome"]] == ABSTAIN


def _write(tmp_path, data) -> object:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_rule_file_errors_name_file_and_key(tmp_path):
    base = {"default": "other", "tie_order": ["diplomatic_contact", "drill", "boilerplate", "other"],
            "labels": LABELS}
    bad_regex = yaml.safe_load(yaml.safe_dump(base))
    bad_regex["labels"]["drill"]["rules"][0]["pattern"] = "(unclosed"
    with pytest.raises(InputError, match=r"rules.yaml: key 'labels.drill.rules.0.pattern': invalid regular expression"):
        load_rules(_write(tmp_path, bad_regex))
    unknown_label = yaml.safe_load(yaml.safe_dump(base))
    unknown_label["labels"]["boilerplate"]["rules"][2]["next_to_label"] = "weather"
    with pytest.raises(InputError, match="next_to_label 'weather' is not a declared label"):
        load_rules(_write(tmp_path, unknown_label))
    bad_tie = {**base, "tie_order": ["drill", "sport", "boilerplate", "other"]}
    with pytest.raises(InputError, match="tie_order names unknown label 'sport'"):
        load_rules(_write(tmp_path, bad_tie))
    typo = yaml.safe_load(yaml.safe_dump(base))
    typo["labels"]["drill"]["rules"][0]["keywrds"] = ["x"]
    with pytest.raises(InputError, match="key 'labels.drill.rules.0.keywrds': unknown key"):
        load_rules(_write(tmp_path, typo))
    (tmp_path / "broken.yaml").write_text("labels: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken.yaml: line \d+"):
        load_rules(tmp_path / "broken.yaml")


def test_a_new_label_is_a_config_change():
    labels = {**LABELS, "cyber": {"description": "cyber attacks", "rules": [
        {"name": "hack", "keywords": ["hackers", "cyberattack"]}]}}
    rs = ruleset(labels=labels, tie_order=["diplomatic_contact", "drill", "boilerplate", "cyber", "other"])
    sentences = segment_article("a", "Hackers launched a cyberattack on the ministry.")
    out = combine(apply_rules(rs, sentences), rs.label_names, rs.tie_order, rs.default)
    assert rs.label_names[out.labels[0]] == "cyber"


def test_shipped_rules_load_and_cover_every_label():
    from training.core.config import load_config

    config = load_config()
    rs = load_rules(config.resolve(config.labelling.rules))
    assert set(rs.label_names) == {"diplomatic_contact", "deployment", "drill", "boilerplate", "other"}
    assert all(spec.description for spec in rs.labels.values())
