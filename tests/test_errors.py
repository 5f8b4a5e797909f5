"""hashwfa.errors: the error type and its "did you mean" hints."""

from hashwfa.errors import HashwfaError, closest_name, did_you_mean


def test_error_is_a_value_error():
    assert issubclass(HashwfaError, ValueError)


def test_closest_name_and_hint():
    names = ["Linear", "Smoothstep", "Nearest"]
    assert closest_name("Linaer", names) == "Linear"
    assert closest_name("zzz", names) is None
    assert did_you_mean("nearst", names) == " Did you mean 'Nearest'?"
    assert did_you_mean("zzz", names) == ""
