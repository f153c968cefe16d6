//! Tests that need more than one daemon live in this package's one test binary (`e2e/main.rs`);
//! the library is empty.
