//! SQLite store (being built).
