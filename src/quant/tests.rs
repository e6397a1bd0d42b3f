//! Tests of the tensor-level logic.
