//! Cross-crate tests for tollgate live in `tests/tests/`; this library is
//! empty on purpose.
