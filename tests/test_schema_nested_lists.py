"""hashwfa.schema: list settings whose elements are numbers, lists of numbers, or either."""

import dataclasses
from typing import Optional, Tuple, Union

import pytest

from hashwfa.errors import HashwfaError
from hashwfa.schema import Problems, build, describe_keys, setting, to_plain


@dataclasses.dataclass(frozen=True)
class Tree:
    either: Optional[Tuple[Union[float, Tuple[float, ...]], ...]] = setting(None, "numbers or lists", min=0.0)
    rows: Tuple[Tuple[int, ...], ...] = setting(((1,),), "lists of integers")


def built(raw):
    problems = Problems(Tree, "t.json")
    tree = build(Tree, raw, problems)
    problems.raise_if_any()
    return tree


def test_numbers_lists_and_mixtures_are_accepted_as_nested_tuples():
    assert built({"either": [1, 2.5]}).either == (1.0, 2.5)
    assert built({"either": [[1, 2], [3]]}).either == ((1.0, 2.0), (3.0,))
    assert built({"either": [1, [2]]}).either == (1.0, (2.0,))  # the shape is the caller's to check
    assert built({"rows": [[1, 2], [3]]}).rows == ((1, 2), (3,))
    assert to_plain(built({"either": [[1, 2], [3]]})) == {"either": [[1.0, 2.0], [3.0]], "rows": [[1]]}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"either": [1, "x"]}, "must be null or a list of numbers or lists of numbers"),
        ({"either": [[1, []]]}, "must be null or a list of numbers or lists of numbers"),
        ({"either": [[]]}, "must be null or a list of numbers or lists of numbers"),
        ({"either": [[1.0, -2.0]]}, "-2.0 (a number), out of range"),
        ({"rows": [1, 2]}, "must be a list of lists of integers"),
        ({"rows": [[1.5]]}, "must be a list of lists of integers"),
    ],
)
def test_wrong_elements_are_reported_with_the_key(raw, expected):
    with pytest.raises(HashwfaError) as info:
        built(raw)
    message = str(info.value)
    assert f"key '{next(iter(raw))}'" in message and expected in message, message


def test_describe_keys_lists_the_setting_with_its_range():
    assert "  either = null  [>= 0.0]" in describe_keys(Tree)
