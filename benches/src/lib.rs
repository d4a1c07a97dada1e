//! Benchmarks for tollgate.
