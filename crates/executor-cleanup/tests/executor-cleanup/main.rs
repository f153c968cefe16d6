//! Behaviour tests of the executor cleanup.
