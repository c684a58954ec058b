//! Import engine (being built).
