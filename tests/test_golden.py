"""Every command's output at fixed seeds, for each quantizer and both modes, matches the golden
file written before the library redesign (see tests/golden_outputs.py)."""

import json

from tests.golden_outputs import GOLDEN, differences, generate


def test_outputs_match_golden():
    out, _ = generate()
    golden = json.loads(GOLDEN.read_text())["outputs"]
    problems = differences(golden, json.loads(json.dumps(out)), "outputs")
    assert not problems, "\n".join(problems[:20])


def test_differences_sees_changes():
    assert differences({"a": [1, 2.0]}, {"a": [1, 2.0 + 1e-9]}) == []
    assert differences({"a": [1, 2.0]}, {"a": [1, 2.1]}) == ["/a[1]: 2.1, expected 2.0"]
    assert differences({"a": [[0, 1]]}, {"a": [[0, 2]]}) == ["/a[0][1]: 2, expected 1"]
    assert differences({"a": 1}, {"b": 1}) == ["/a: missing", "/b: unexpected"]
    assert differences({"x": "item1"}, {"x": "item2"})
