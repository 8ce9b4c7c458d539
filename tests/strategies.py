"""Hypothesis strategies shared by the store round-trip tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Any JSON value (finite floats only: JSON has no NaN).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

#: Chat messages: a role, and JSON content or extra fields of any shape.
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "tool"])},
        optional={"content": json_values, "name": st.text(max_size=10), "extra": json_values},
    ),
    max_size=6,
)
