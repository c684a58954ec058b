//! Auth (being built).
