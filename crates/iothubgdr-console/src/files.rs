//! The console's files, compiled in with `include_str!`.
//!
//! A fixed table instead of an embedding crate (rust-embed and the like): a dozen text
//! files need no directory walk, compression or build script, and a missing file is a
//! compile error here rather than a 404 in production.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct File {
    /// The path under `/console/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub contents: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! file {
    ($path:literal, $content_type:expr) => {
        File {
            path: $path,
            content_type: $content_type,
            contents: include_str!(concat!("../assets/", $path)),
        }
    };
}

/// Every file the console serves.
pub const FILES: &[File] = &[
    file!("index.html", HTML),
    file!("console.css", CSS),
    file!("favicon.svg", SVG),
    file!("js/main.js", JS),
    file!("js/api.js", JS),
    file!("js/dom.js", JS),
    file!("js/format.js", JS),
    file!("js/signin.js", JS),
    file!("js/imports.js", JS),
    file!("js/assets.js", JS),
    file!("js/asset.js", JS),
    file!("js/chart.js", JS),
    file!("js/locations.js", JS),
];

/// The file at `path` (relative to `/console/`), if the console has one.
pub fn find(path: &str) -> Option<&'static File> {
    FILES.iter().find(|file| file.path == path)
}
