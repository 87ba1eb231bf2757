//! The store conformance suite (placeholder: being implemented).
