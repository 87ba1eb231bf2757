//! Readers (placeholder).
