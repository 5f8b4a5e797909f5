"""The glibc allocator settings of the command-line tools: present or absent, never an error."""

import sys

from hashwfa.host import allocator


def test_a_symbol_the_c_library_lacks_is_none_not_an_error():
    assert allocator._libc_function("hashwfa_no_such_libc_symbol") is None


def test_settings_answer_with_a_bool_on_any_system():
    assert isinstance(allocator.keep_freed_memory(), bool)
    assert isinstance(allocator.return_freed_memory(), bool)


def test_nothing_is_looked_up_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator._libc_function("malloc_trim") is None
    assert allocator.return_freed_memory() is False
