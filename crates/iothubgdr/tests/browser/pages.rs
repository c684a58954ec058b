//! What the tests do on and read from the console's pages.

use std::time::Duration;

use serde_json::{json, Value};

use super::{eventually, Browser};

pub async fn sign_in_with_client(browser: &Browser, client_id: &str, secret: &str) {
    browser.type_into("#client-id", client_id).await;
    browser.type_into("#client-secret", secret).await;
    browser.click("#sign-in-client button[type=submit]").await;
    wait_heading(browser, "Imports").await;
}

pub async fn wait_heading(browser: &Browser, text: &str) {
    eventually(
        &format!("the {text} page"),
        Duration::from_secs(20),
        || async { (browser.text("#page-title").await == text).then_some(()) },
    )
    .await;
}

/// Every form control has a label, the page has its landmarks, and the focus is on the
/// new page's heading (where a screen reader starts reading).
pub async fn assert_accessible(browser: &Browser) {
    let unlabelled = browser
        .js(
            "return [...document.querySelectorAll('input, select, textarea, progress')]
                 .filter(c => c.labels.length === 0 && !c.getAttribute('aria-label'))
                 .map(c => c.id || c.outerHTML.slice(0, 60));",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
    let landmarks = browser
        .js("return ['header', 'main', 'nav'].filter(l => !document.querySelector(l));")
        .await;
    assert_eq!(landmarks, json!([]), "missing landmarks");
    let focused = browser
        .js("return document.activeElement && document.activeElement.id;")
        .await;
    assert_eq!(
        focused,
        json!("page-title"),
        "the focus is on the page's heading"
    );
}

/// The newest import row: [progress value, figures, status, error].
pub async fn first_import(browser: &Browser) -> Value {
    browser
        .js("const row = document.querySelector('.imports .import');
             if (!row) return null;
             return { value: row.querySelector('progress').value,
                      figures: row.querySelector('.import-figures').textContent,
                      status: row.querySelector('.badge').dataset.status,
                      name: row.querySelector('.import-name').textContent,
                      error: row.querySelector('.import-error').textContent };")
        .await
}

/// The asset identities of the table's current page.
pub async fn table_identities(browser: &Browser) -> Vec<String> {
    let rows = browser
        .js("return [...document.querySelectorAll('.assets-table tbody tr[data-identity]')].map(r => r.dataset.identity);")
        .await;
    rows.as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("identity").to_owned())
        .collect()
}

pub async fn wait_summary(browser: &Browser, expected: &str) {
    eventually(
        &format!("summary {expected:?}"),
        Duration::from_secs(20),
        || async {
            let now = browser.text("#assets-summary").await;
            (now == expected).then_some(())
        },
    )
    .await;
}

pub fn count_text(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
