//! The console's answers and the "safe by construction" rules its files must keep.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::files::find;

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let app: Router = router();
    let answer = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn assert_secured(headers: &axum::http::HeaderMap) {
    assert_eq!(
        headers[header::CONTENT_SECURITY_POLICY],
        CONTENT_SECURITY_POLICY
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn serves_the_index_at_the_prefix_with_its_security_headers() {
    let (status, headers, body) = get("/console/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_secured(&headers);
    assert!(body.contains(r#"<script type="module" src="js/main.js"></script>"#));

    let (status, headers, _) = get("/console").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/console/");
}

#[tokio::test]
async fn serves_every_file_with_its_type_and_refuses_others() {
    for file in FILES {
        let (status, headers, body) = get(&format!("/console/{}", file.path)).await;
        assert_eq!(status, StatusCode::OK, "{}", file.path);
        assert_eq!(headers[header::CONTENT_TYPE], file.content_type);
        assert_secured(&headers);
        assert_eq!(body, file.contents);
    }
    for missing in [
        "/console/nope.js",
        "/console/js/",
        "/console/../Cargo.toml",
        "/console/js/../../src/lib.rs",
    ] {
        let (status, headers, body) = get(missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert_secured(&headers);
        assert_eq!(body, "not found\n");
    }
}

#[test]
fn the_policy_allows_only_this_origin_and_no_inline_code() {
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    assert!(!CONTENT_SECURITY_POLICY.contains("http"));
    assert!(!CONTENT_SECURITY_POLICY.contains('*'));
}

fn assets_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn files_on_disk(dir: &std::path::Path, prefix: &str, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            files_on_disk(&entry.path(), &format!("{name}/"), found);
        } else {
            found.push(name);
        }
    }
}

#[test]
fn every_file_of_the_assets_folder_is_embedded() {
    let mut on_disk = Vec::new();
    files_on_disk(&assets_dir(), "", &mut on_disk);
    on_disk.sort();
    let mut embedded: Vec<String> = FILES.iter().map(|f| f.path.to_owned()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
}

#[test]
fn every_module_import_names_an_embedded_file() {
    for file in FILES.iter().filter(|f| f.path.ends_with(".js")) {
        for line in file.contents.lines() {
            let Some(rest) = line.split(" from \"./").nth(1) else {
                continue;
            };
            let target = rest.split('"').next().unwrap();
            assert!(
                find(&format!("js/{target}")).is_some(),
                "{} imports {target}",
                file.path
            );
        }
    }
}

#[test]
fn the_page_has_no_inline_script_style_or_handler() {
    let index = find("index.html").unwrap().contents.to_ascii_lowercase();
    assert!(!index.contains("<style"));
    assert!(!index.contains(" style="));
    for script in index.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap();
        assert!(tag.contains("src="), "inline script: {tag}");
        assert!(script.split('>').nth(1).unwrap().starts_with("</script"));
    }
    for attribute in [
        " onclick=",
        " onload=",
        " onerror=",
        " onsubmit=",
        "javascript:",
    ] {
        assert!(!index.contains(attribute), "{attribute}");
    }
}

/// Hub-controlled strings must only ever become text: no script may parse HTML, run
/// strings as code, or keep anything in localStorage or cookies.
#[test]
fn no_script_parses_html_evaluates_strings_or_persists_the_token() {
    let forbidden = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
        "eval(",
        "new Function",
        "setTimeout(\"",
        "localStorage",
        "document.cookie",
        "http://",
        "https://",
    ];
    for file in FILES.iter().filter(|f| f.path.ends_with(".js")) {
        // The SVG namespace is a name, not a request.
        let contents = file.contents.replace("http://www.w3.org/2000/svg", "");
        for word in forbidden {
            assert!(!contents.contains(word), "{} uses {word}", file.path);
        }
    }
    let css = find("console.css").unwrap().contents;
    assert!(!css.contains("url("), "the stylesheet loads nothing");
    assert!(!css.contains("@import"));
}
