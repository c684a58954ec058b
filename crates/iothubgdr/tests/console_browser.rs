//! The web console in headless Chromium against the real server and emulator: sign in,
//! an import's live progress bar to 100%, filters and paging with the right totals, an
//! asset's page, locations, cancel and delete, hostile hub strings shown as text, and
//! sign-out leaving no token behind. Each page is photographed (desktop and phone width)
//! into target/ci-artifacts/console/.

mod browser;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use browser::fixtures::{hub, server_for, tag_device, Api};
use browser::pages::{
    assert_accessible, count_text, first_import, sign_in_with_client, table_identities,
    wait_heading, wait_summary,
};
use browser::{eventually, Browser};
use serde_json::{json, Value};

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_imports_live_filters_pages_and_signs_out() {
    let Some(browser) =
        Browser::start("console_signs_in_imports_live_filters_pages_and_signs_out").await
    else {
        return;
    };
    // 2,500 devices in 25 pages of 150 ms: several seconds of visible progress.
    let hub = hub(2_500, Duration::from_millis(150)).await;
    let (_files, server) = server_for(&hub);
    let app = server.create_test_app("acme");
    let api = Api::new(&server, &app.client_id, &app.client_secret).await;
    let plant = api
        .post(
            "/archivist/v2/locations",
            json!({"display_name": "Plant 1", "description": "North site"}),
        )
        .await;
    let plant = plant["identity"].as_str().expect("identity").to_owned();

    // Sign in with the app registration.
    browser.goto(&server.url_of("/console/")).await;
    wait_heading(&browser, "Sign in").await;
    assert_accessible(&browser).await;
    browser.screenshots("sign-in").await;
    sign_in_with_client(&browser, &app.client_id, &app.client_secret).await;
    assert_accessible(&browser).await;
    let stored = browser.stored().await;
    assert!(
        stored.contains("eyJ"),
        "the token is kept for this tab: {stored}"
    );
    assert!(
        !stored.contains(&app.client_secret),
        "the client secret is never kept"
    );
    let address = browser.client.current_url().await.expect("url").to_string();
    assert!(!address.contains("eyJ") && !address.contains(&app.client_secret));

    // Start an import with the form and watch its bar to 100%.
    let connection_string = hub.iothub_connection_string();
    browser.type_into("#import-name", "Plant 1 hub").await;
    browser
        .type_into("#import-secret", &connection_string)
        .await;
    browser.select("#import-location", &plant).await;
    browser.click("#start-import button[type=submit]").await;
    let mut seen = Vec::new();
    let watching = std::time::Instant::now();
    let last = loop {
        let row = first_import(&browser).await;
        if !row.is_null() {
            seen.push(row["value"].as_f64().unwrap_or(-1.0));
            if row["status"] == "STATUS_FINISHED" {
                break row;
            }
        }
        assert!(
            watching.elapsed() < Duration::from_secs(90),
            "the import did not finish: {row}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        browser
            .js("return document.getElementById('import-secret').value;")
            .await,
        json!(""),
        "the connection string is not kept in the form"
    );
    assert_eq!(last["name"], "Plant 1 hub");
    assert_eq!(last["value"].as_f64(), Some(100.0));
    let figures = last["figures"].as_str().expect("figures");
    assert!(
        figures.starts_with("2,500 of 2,500 devices (100%)"),
        "{figures}"
    );
    assert!(
        seen.iter().any(|&value| value > 0.0 && value < 100.0),
        "the bar moved while the import ran: {seen:?}"
    );
    let operations = api.get("/archivist/v2/iothubgdr").await;
    assert_eq!(
        operations["operations"][0]["result"]["number_assets_imported"],
        json!(2_500)
    );
    browser.screenshots("imports").await;

    // Filter assets with the form and page through every match.
    browser.click("a[data-section=assets]").await;
    wait_heading(&browser, "Assets").await;
    assert_accessible(&browser).await;
    let fleet_total = api.asset_count("").await;
    assert_eq!(fleet_total, 2_500);
    wait_summary(&browser, "Assets 1–25 of 2,500").await;
    browser.select("#filter-type", "IoT Edge Device").await;
    browser.select("#filter-status", "enabled").await;
    browser.click("#apply-filters").await;
    let expected = api
        .asset_count(
            "attributes.arc_display_type=IoT%20Edge%20Device&attributes.iothub_status=enabled",
        )
        .await;
    assert!(expected > 50, "the seed gives edge devices: {expected}");
    let mut identities = HashSet::new();
    let mut page = 0u64;
    loop {
        let first = page * 25 + 1;
        let last = (first + 24).min(expected);
        wait_summary(
            &browser,
            &format!(
                "Assets {}–{} of {}",
                count_text(first),
                count_text(last),
                count_text(expected)
            ),
        )
        .await;
        let rows = table_identities(&browser).await;
        assert_eq!(rows.len() as u64, last - first + 1);
        for identity in rows {
            assert!(identities.insert(identity), "an asset shown twice");
        }
        let more = browser
            .js("return !document.getElementById('page-next').disabled;")
            .await;
        if more != json!(true) {
            break;
        }
        if page == 0 {
            browser.screenshots("assets").await;
        }
        browser.click("#page-next").await;
        page += 1;
    }
    assert_eq!(
        identities.len() as u64,
        expected,
        "every match exactly once"
    );
    // Back one page gives the previous page again.
    browser.click("#page-previous").await;
    let first = (page - 1) * 25 + 1;
    wait_summary(
        &browser,
        &format!(
            "Assets {}–{} of {}",
            count_text(first),
            count_text(first + 24),
            count_text(expected)
        ),
    )
    .await;

    // Any attribute: an extra filter row.
    browser.goto(&server.url_of("/console/#/assets")).await;
    wait_summary(&browser, "Assets 1–25 of 2,500").await;
    browser
        .click("#asset-filters .actions button.button-quiet")
        .await;
    browser.type_into("#extra-name-1", "iothub_iot_edge").await;
    browser.type_into("#extra-value-1", "true").await;
    browser.click("#apply-filters").await;
    let connected = api.asset_count("attributes.iothub_iot_edge=true").await;
    wait_summary(
        &browser,
        &format!("Assets 1–25 of {}", count_text(connected)),
    )
    .await;

    // The fleet summary: counted per hub, the same numbers as the API's counts.
    let fleet = eventually("the fleet table", Duration::from_secs(20), || async {
        let numbers = browser
            .js("const table = document.querySelector('.fleet-table');
                 if (!table) return null;
                 const numbers = { hub: table.querySelector('thead th:nth-child(2)').textContent };
                 for (const row of table.querySelectorAll('tbody tr')) {
                   numbers[row.dataset.measure] = row.querySelector('td').textContent;
                 }
                 return numbers;")
            .await;
        (!numbers.is_null()).then_some(numbers)
    })
    .await;
    let edge = api
        .asset_count("attributes.arc_display_type=IoT%20Edge%20Device")
        .await;
    let disabled = api.asset_count("attributes.iothub_status=disabled").await;
    assert_eq!(fleet["hub"], json!(hub.host_name()));
    assert_eq!(fleet["Devices"], json!("2,500"));
    assert_eq!(fleet["IoT Device"], json!(count_text(2_500 - edge)));
    assert_eq!(fleet["IoT Edge Device"], json!(count_text(edge)));
    assert_eq!(fleet["enabled"], json!(count_text(2_500 - disabled)));
    assert_eq!(fleet["disabled"], json!(count_text(disabled)));
    assert_eq!(
        browser
            .js("return document.querySelectorAll('svg.fleet-chart rect.segment').length > 0;")
            .await,
        json!(true)
    );

    // One asset: its attributes and its history (or that there is none yet).
    let first_device = browser.text(".assets-table tbody th a").await;
    browser.click(".assets-table tbody th a").await;
    wait_heading(&browser, &first_device).await;
    let attributes = browser
        .js("return [...document.querySelectorAll('.attributes dt')].map(d => d.textContent);")
        .await;
    for name in [
        "arc_display_name",
        "iothub_device_id",
        "iothub_hub",
        "iothub_status",
    ] {
        assert!(
            attributes.as_array().expect("names").contains(&json!(name)),
            "{name}"
        );
    }
    // The timeline shows the asset's events once the server records them; until then the
    // events route answers 404 and the page says there is no history.
    let asset_path = browser
        .client
        .current_url()
        .await
        .expect("url")
        .fragment()
        .expect("fragment")
        .trim_start_matches('/')
        .to_owned();
    let events = api
        .http
        .get(format!(
            "{}/archivist/v2/{asset_path}/events",
            api.server_url
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("GET events");
    let recorded = if events.status() == 200 {
        let body: Value = events.json().await.expect("events JSON");
        body["events"].as_array().map_or(0, Vec::len)
    } else {
        0
    };
    let shown = eventually("the history", Duration::from_secs(20), || async {
        let shown = browser
            .js("if (document.getElementById('no-history')) return 0;
                 const items = document.querySelectorAll('ol.timeline li');
                 return items.length ? items.length : null;")
            .await;
        shown.as_u64()
    })
    .await;
    assert_eq!(
        shown as usize,
        recorded.min(50),
        "one timeline entry per event"
    );
    browser.screenshots("asset").await;

    // Locations: create one with the form; the list shows it and the total grows.
    browser.click("a[data-section=locations]").await;
    wait_heading(&browser, "Locations").await;
    assert_accessible(&browser).await;
    eventually("the locations list", Duration::from_secs(20), || async {
        (browser.text("#locations-summary").await == "1 of 1 locations shown").then_some(())
    })
    .await;
    browser.type_into("#location-name", "Depot south").await;
    browser.type_into("#location-latitude", "51.5").await;
    browser.type_into("#location-longitude", "-0.12").await;
    browser.click("#create-location button[type=submit]").await;
    eventually("the new location", Duration::from_secs(20), || async {
        (browser.text("#locations-summary").await == "2 of 2 locations shown").then_some(())
    })
    .await;
    assert_eq!(
        browser.text(".locations-table tbody th").await,
        "Depot south"
    );
    let listed = api.get("/archivist/v2/locations").await;
    assert_eq!(listed["locations"][0]["display_name"], "Depot south");
    assert_eq!(listed["locations"][0]["latitude"], json!(51.5));
    browser.screenshots("locations").await;

    // Sign out: the token is gone from every storage, and the console asks to sign in.
    browser.click("#sign-out").await;
    wait_heading(&browser, "Sign in").await;
    let stored = browser.stored().await;
    assert!(!stored.contains("eyJ"), "a token is left behind: {stored}");
    assert_eq!(stored, "{}");
    browser.goto(&server.url_of("/console/#/assets")).await;
    wait_heading(&browser, "Sign in").await;
    assert!(browser.alert().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_cancels_a_running_import_and_deletes_it() {
    let Some(browser) = Browser::start("console_cancels_a_running_import_and_deletes_it").await
    else {
        return;
    };
    // 5,000 devices in 50 pages of 400 ms: still running when cancelled, even on a busy
    // machine (the cancel ends it early, so the test does not wait for all of it).
    let hub = hub(5_000, Duration::from_millis(400)).await;
    let (_files, server) = server_for(&hub);
    let app = server.create_test_app("acme");
    let api = Api::new(&server, &app.client_id, &app.client_secret).await;

    // A token the server did not issue is refused on the sign-in page.
    browser.goto(&server.url_of("/console/")).await;
    wait_heading(&browser, "Sign in").await;
    browser
        .type_into("#bearer-token", "eyJhbGciOiJub25lIn0.e30.")
        .await;
    browser.click("#sign-in-token button[type=submit]").await;
    eventually("the refusal", Duration::from_secs(20), || async {
        let shown = browser.text("#sign-in-message .error").await;
        shown.contains("not accepted").then_some(())
    })
    .await;
    assert_eq!(browser.stored().await, "{}");

    // Sign in with a pasted bearer token, as the demo's token file holds it.
    browser
        .type_into(
            "#bearer-token",
            &format!("Authorization: Bearer {}", api.token),
        )
        .await;
    browser.click("#sign-in-token button[type=submit]").await;
    wait_heading(&browser, "Imports").await;

    browser.type_into("#import-name", "Big hub").await;
    browser
        .type_into("#import-secret", &hub.iothub_connection_string())
        .await;
    browser.click("#start-import button[type=submit]").await;
    eventually("the first pages", Duration::from_secs(60), || async {
        let row = first_import(&browser).await;
        (row["status"] == "STATUS_INPROGRESS" && row["value"].as_f64() > Some(0.0)).then_some(())
    })
    .await;
    browser
        .click(".imports .import .actions button.button-quiet")
        .await;
    eventually("the confirmation", Duration::from_secs(10), || async {
        let open = browser
            .js("return document.getElementById('confirm').open;")
            .await;
        (open == json!(true)).then_some(())
    })
    .await;
    assert_eq!(browser.text("#confirm-title").await, "Cancel this import?");
    browser.screenshots("imports-cancel").await;
    browser.click("#confirm-yes").await;
    let row = eventually("the cancelled state", Duration::from_secs(20), || async {
        let row = first_import(&browser).await;
        (row["status"] == "STATUS_CANCELLED").then_some(row)
    })
    .await;
    let operations = api.get("/archivist/v2/iothubgdr").await;
    let operation = &operations["operations"][0];
    assert_eq!(operation["result"]["status"], "STATUS_CANCELLED");
    let count = operation["result"]["number_assets_imported"]
        .as_u64()
        .expect("count");
    assert!(count > 0 && count < 5_000, "{count}");
    assert_eq!(
        api.asset_count("").await,
        count,
        "the count is the assets written"
    );
    let figures = row["figures"].as_str().expect("figures");
    assert!(
        figures.starts_with(&format!("{} of 5,000 devices", count_text(count))),
        "{figures}"
    );

    // Delete, after a confirmation that a kept import is not deleted.
    browser
        .click(".imports .import .actions .button-danger-quiet")
        .await;
    browser.click("#confirm-no").await;
    assert_eq!(
        api.get("/archivist/v2/iothubgdr").await["operations"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    browser
        .click(".imports .import .actions .button-danger-quiet")
        .await;
    browser.click("#confirm-yes").await;
    eventually("the row to go", Duration::from_secs(20), || async {
        let rows = browser
            .js("return document.querySelectorAll('.imports .import').length;")
            .await;
        (rows == json!(0)).then_some(())
    })
    .await;
    let identity = operation["identity"].as_str().expect("identity");
    let gone = api
        .http
        .get(format!("{}/archivist/v2/{identity}", api.server_url))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_hub_strings_as_text_and_runs_none_of_them() {
    let Some(browser) =
        Browser::start("console_shows_hub_strings_as_text_and_runs_none_of_them").await
    else {
        return;
    };
    let hub = hub(3, Duration::ZERO).await;
    tag_device(&hub, "device-000000", json!({"label": HOSTILE})).await;
    let (_files, server) = server_for(&hub);
    let app = server.create_test_app("acme");
    let api = Api::new(&server, &app.client_id, &app.client_secret).await;
    // The import's name is the tenant's, and a failed import's message is shown too.
    let failed = api
        .post(
            "/archivist/v2/iothubgdr",
            json!({"display_name": "Bad secret", "secret": "not a connection string"}),
        )
        .await;
    assert!(failed["error"]["error_message"].is_string());
    api.post(
        "/archivist/v2/iothubgdr",
        json!({"display_name": HOSTILE, "secret": hub.iothub_connection_string()}),
    )
    .await;
    eventually("the import", Duration::from_secs(30), || async {
        (api.asset_count("").await == 3).then_some(())
    })
    .await;

    browser.goto(&server.url_of("/console/")).await;
    sign_in_with_client(&browser, &app.client_id, &app.client_secret).await;
    let names = eventually("both imports", Duration::from_secs(20), || async {
        let names = browser
            .js("return [...document.querySelectorAll('.import-name')].map(n => n.textContent);")
            .await;
        (names.as_array().map(Vec::len) == Some(2)).then_some(names)
    })
    .await;
    assert_eq!(names, json!([HOSTILE, "Bad secret"]));
    let error = browser
        .js("return document.querySelectorAll('.import-error')[1].textContent;")
        .await;
    assert_eq!(
        error,
        json!(format!(
            "Error: {}",
            failed["error"]["error_message"].as_str().expect("message")
        ))
    );
    browser.screenshots("imports-failed").await;

    // Filter on the hostile tag itself, typed into the form.
    browser.click("a[data-section=assets]").await;
    wait_summary(&browser, "Assets 1–3 of 3").await;
    browser
        .click("#asset-filters .actions button.button-quiet")
        .await;
    browser.type_into("#extra-name-1", "iothub_tag_label").await;
    browser.type_into("#extra-value-1", HOSTILE).await;
    browser.click("#apply-filters").await;
    wait_summary(&browser, "Assets 1–1 of 1").await;
    browser.click(".assets-table tbody th a").await;
    wait_heading(&browser, "device-000000").await;
    let shown = browser
        .js("const dt = [...document.querySelectorAll('.attributes dt')].find(d => d.textContent === 'iothub_tag_label');
             return dt.nextElementSibling.textContent;")
        .await;
    assert_eq!(shown, json!(HOSTILE));
    browser.screenshots("asset-hostile").await;

    // Nothing of it became markup, and nothing ran.
    assert_eq!(
        browser
            .js("return document.querySelectorAll('img').length;")
            .await,
        json!(0)
    );
    assert!(
        browser.alert().await.is_none(),
        "a hub string ran as script"
    );
    browser.click("a[data-section=imports]").await;
    wait_heading(&browser, "Imports").await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('img').length;")
            .await,
        json!(0)
    );
    assert!(
        browser.alert().await.is_none(),
        "a hub string ran as script"
    );
}

/// The real server (all of the API's layers) sends the console with its security headers,
/// and the OpenAPI description of the API leaves the console out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sends_the_console_with_its_security_headers() {
    let server = common::TestServer::start();
    let http = server.client();
    for (path, content_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/js/main.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let answer = http.get(server.url_of(path)).send().await.expect("GET");
        assert_eq!(answer.status(), 200, "{path}");
        let headers = answer.headers();
        assert_eq!(headers["content-type"], content_type);
        assert_eq!(
            headers["content-security-policy"],
            iothubgdr_console::CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers.get("set-cookie").is_none());
    }
    let missing = http
        .get(server.url_of("/console/nothing.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    let document: Value = http
        .get(server.url_of("/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|path| !path.starts_with("/console")));
}
