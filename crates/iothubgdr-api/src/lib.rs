//! HTTP API (being built).
