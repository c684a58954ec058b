//! `GET /openapi.json` describes what the server really does. Against the real binary and
//! the IoT Hub emulator, every documented path and method is called (valid, unauthenticated,
//! unknown identity, invalid and oversized bodies); every answer's status must be one the
//! document lists for that operation, and every JSON body must match the documented schema:
//! no undocumented key, every required key present, the documented JSON types and enums.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TestServer;
use iothub_emulator::{EmulatorConfig, Faults, RunningEmulator};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// The document, with a small schema checker for the subset of swagger 2.0 it uses
/// (`$ref`, `type`, `properties`, `patternProperties`, `required`, `additionalProperties`,
/// `items`, `enum`, `maxItems`, `minimum`, `x-nullable`). Hand-written: a JSON-schema crate would not know
/// swagger 2.0's `x-nullable` nor its `#/definitions/` references, and this is all we need.
struct Spec {
    doc: Value,
    /// Definitions some checked value went through: shows which schemas the test exercised.
    exercised: Mutex<BTreeSet<String>>,
}

impl Spec {
    fn new(doc: Value) -> Self {
        assert_eq!(doc["swagger"], "2.0", "a swagger 2.0 document");
        Self {
            doc,
            exercised: Mutex::default(),
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                let name = target
                    .strip_prefix("#/definitions/")
                    .unwrap_or_else(|| panic!("{target} is not a local definition"));
                self.exercised.lock().unwrap().insert(name.to_owned());
                let definition = &self.doc["definitions"][name];
                assert!(definition.is_object(), "unresolved {target}");
                self.resolve(definition)
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if value.is_null() {
            if schema["x-nullable"] != json!(true) {
                errors.push(format!(
                    "{at}: null, but the document does not say nullable"
                ));
            }
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not in the enum {allowed:?}"));
            }
        }
        let kind = schema["type"].as_str().unwrap_or("");
        let type_ok = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "" => true,
            other => panic!("{at}: the checker does not know type {other}"),
        };
        if !type_ok {
            errors.push(format!(
                "{at}: {value} is not of the documented type {kind}"
            ));
            return;
        }
        if let (Some(minimum), Some(number)) = (schema["minimum"].as_f64(), value.as_f64()) {
            if number < minimum {
                errors.push(format!("{at}: {number} is below the minimum {minimum}"));
            }
        }
        match value {
            Value::Object(map) => self.check_object(schema, map, at, errors),
            Value::Array(items) => {
                if let Some(max) = schema["maxItems"].as_u64() {
                    if items.len() as u64 > max {
                        errors.push(format!("{at}: more than {max} items"));
                    }
                }
                for (index, item) in items.iter().enumerate() {
                    self.check(&schema["items"], item, &format!("{at}[{index}]"), errors);
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        map: &Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        let properties = schema["properties"].as_object();
        // An object that lists properties is closed unless it says otherwise; one without
        // (attributes, say) documents its open shape with `additionalProperties`.
        let open = match &schema["additionalProperties"] {
            Value::Bool(open) => *open,
            Value::Null => properties.is_none(),
            _ => true,
        };
        // `patternProperties` (attributes: names of 1 to 1024 characters) is checked by its
        // value schema only; the checker has no regex engine, and the server bounds names.
        let patterned = schema["patternProperties"]
            .as_object()
            .and_then(|patterns| patterns.values().next());
        for (key, item) in map {
            match properties.and_then(|properties| properties.get(key)) {
                Some(property) => self.check(property, item, &format!("{at}.{key}"), errors),
                None if patterned.is_some() => {
                    if let Some(value_schema) = patterned {
                        self.check(value_schema, item, &format!("{at}.{key}"), errors);
                    }
                }
                None if open => {}
                None => errors.push(format!("{at}: key `{key}` is not a documented property")),
            }
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().expect("required names are strings");
            if !map.contains_key(name) {
                errors.push(format!("{at}: required property `{name}` is missing"));
            }
        }
    }

    fn assert_matches(&self, schema: &Value, value: &Value, what: &str) {
        let mut errors = Vec::new();
        self.check(schema, value, "$", &mut errors);
        assert!(
            errors.is_empty(),
            "{what} does not match the document:\n  {}\nvalue: {value}",
            errors.join("\n  ")
        );
    }

    fn definition(&self, name: &str) -> Value {
        json!({"$ref": format!("#/definitions/{name}")})
    }

    /// Every `(path, method)` the document lists.
    fn operations(&self) -> Vec<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        let mut operations = Vec::new();
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    operations.push((path.clone(), method.to_owned()));
                }
            }
        }
        operations
    }

    fn operation(&self, path: &str, method: &str) -> &Value {
        let operation = &self.doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        operation
    }

    fn is_secured(&self, path: &str, method: &str) -> bool {
        let security = match self.operation(path, method).get("security") {
            Some(own) => own,
            None => &self.doc["security"],
        };
        security.as_array().is_some_and(|list| !list.is_empty())
    }

    /// The body schema of a documented operation, if it takes a JSON body.
    fn body_schema(&self, path: &str, method: &str) -> Option<&Value> {
        self.operation(path, method)["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|parameter| parameter["in"] == "body")
            .map(|parameter| self.resolve(&parameter["schema"]))
    }

    fn produces_json(&self, path: &str, method: &str) -> bool {
        let produces = match self.operation(path, method).get("produces") {
            Some(own) => own,
            None => &self.doc["produces"],
        };
        produces
            .as_array()
            .is_some_and(|list| list.contains(&json!("application/json")))
    }

    /// Asserts `answer` is documented for `method path`: a listed status, the documented
    /// body schema, integer headers where the document says so.
    fn assert_documented(&self, path: &str, method: &str, answer: &Answer) {
        let what = format!("{} {path} ({})", method.to_uppercase(), answer.url);
        assert_ne!(
            answer.status, 405,
            "{what}: 405, the server has no such method"
        );
        if answer.status == 404 {
            assert_ne!(
                answer.json["message"], "no such route",
                "{what}: the server has no such route"
            );
        }
        let response = &self.operation(path, method)["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{what} answered {}, which the document does not list: {}",
            answer.status,
            answer.text
        );
        let content_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let json_body = answer.status != 200 || self.produces_json(path, method);
        if json_body {
            assert!(
                content_type.starts_with("application/json"),
                "{what}: content type {content_type}"
            );
            let schema = response.get("schema").expect("documented schema");
            self.assert_matches(schema, &answer.json, &format!("the answer of {what}"));
        } else {
            let produces = self.operation(path, method)["produces"][0]
                .as_str()
                .expect("produces");
            assert!(content_type.starts_with(produces), "{what}: {content_type}");
        }
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            if let Some(value) = answer.headers.get(name.as_str()) {
                if header["type"] == "integer" {
                    let text = value.to_str().expect("ASCII header");
                    assert!(text.parse::<u64>().is_ok(), "{what}: {name}: {text}");
                }
            }
        }
    }
}

struct Answer {
    url: String,
    status: u16,
    headers: HeaderMap,
    text: String,
    json: Value,
}

enum Body {
    None,
    Json(Value),
    Raw(String),
    Form(Vec<(String, String)>),
}

struct Client {
    server_url: String,
    http: reqwest::Client,
}

impl Client {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        let url = format!("{}{path}", self.server_url);
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(text) => request.header(CONTENT_TYPE, "application/json").body(text),
            Body::Form(fields) => request.form(&fields),
        };
        let answer = request.send().await.expect("request");
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let text = answer.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            url,
            status,
            headers,
            text,
            json,
        }
    }
}

async fn emulator(devices: u64, faults: Faults) -> RunningEmulator {
    iothub_emulator::start(EmulatorConfig {
        devices,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

/// A server that imports from `hub` under the hub's real host name.
fn server_for(hub: &RunningEmulator) -> (tempfile::TempDir, TestServer) {
    let files = tempfile::tempdir().expect("dir");
    let ca = files.path().join("emulator-ca.pem");
    std::fs::write(&ca, hub.ca_cert_pem()).expect("write CA");
    let ca = ca.display().to_string();
    let resolve = format!("{}={}", hub.host_name(), hub.addr());
    let server = TestServer::start_with(&[
        "--iothub-ca-file",
        &ca,
        "--iothub-resolve",
        &resolve,
        "--iothub-retry-budget",
        "10s",
    ]);
    (files, server)
}

async fn fetch_spec(client: &Client) -> Spec {
    let answer = client
        .send("get", "/openapi.json", None, &[], Body::None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let content_type = answer.headers.get(CONTENT_TYPE).expect("content type");
    assert_eq!(content_type, "application/json");
    let spec = Spec::new(answer.json.clone());
    spec.assert_documented("/openapi.json", "get", &answer);
    spec
}

fn uuid_of(identity: &Value) -> String {
    let identity = identity.as_str().expect("identity");
    let (_, uuid) = identity.split_once('/').expect("kind/uuid");
    uuid.to_owned()
}

/// Polls the import until `done`.
async fn wait_done(client: &Client, token: &str, uuid: &str) -> Value {
    let started = Instant::now();
    loop {
        let path = format!("/archivist/v2/iothubgdr/{uuid}");
        let answer = client
            .send("get", &path, Some(token), &[], Body::None)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        if answer.json["done"] == json!(true) {
            return answer.json;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_documented() {
    let hub = emulator(5, Faults::default()).await;
    let (_files, server) = server_for(&hub);
    let client = Client {
        server_url: server.url().to_owned(),
        http: server.client(),
    };
    let spec = fetch_spec(&client).await;
    let app = server.create_test_app("acme");
    let token = server.token(&app.client_id, &app.client_secret).await;
    let token = token.as_str();

    // Real identities to fill `{uuid}` with; two of each so lists have a second page.
    let mut location = None;
    let mut asset = None;
    for name in ["Depot", "Dock"] {
        let answer = client
            .send(
                "post",
                "/archivist/v2/locations",
                Some(token),
                &[],
                Body::Json(json!({"display_name": name})),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        location = Some(answer);
        let body =
            json!({"behaviours": ["RecordEvidence"], "attributes": {"arc_display_name": name}});
        let answer = client
            .send(
                "post",
                "/archivist/v2/assets",
                Some(token),
                &[],
                Body::Json(body),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        asset = Some(answer);
    }
    let (location, asset) = (location.unwrap(), asset.unwrap());
    // A second event on the asset, so its events list has a second page too.
    let asset_identity = asset.json["identity"]
        .as_str()
        .expect("identity")
        .to_owned();
    let event = client
        .send(
            "post",
            &format!("/archivist/v2/{asset_identity}/events"),
            Some(token),
            &[],
            Body::Json(json!({"behaviour": "RecordEvidence", "operation": "Record",
                              "asset_attributes": {"checked": "yes"}})),
        )
        .await;
    assert_eq!(event.status, 200, "{}", event.text);
    let event_uuid = event.json["identity"]
        .as_str()
        .and_then(|identity| identity.rsplit('/').next())
        .expect("event identity")
        .to_owned();
    let start_import = || async {
        let answer = client
            .send(
                "post",
                "/archivist/v2/iothubgdr",
                Some(token),
                &[],
                Body::Json(
                    json!({"display_name": "kept", "secret": hub.iothub_connection_string()}),
                ),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        uuid_of(&answer.json["identity"])
    };
    let kept_import = start_import().await;
    let deleted_import = start_import().await;
    // The walk below calls every documented route on the kept import, `:cancel` among
    // them; it must find the import finished (cancel returns a finished one unchanged),
    // not race its five devices.
    wait_done(&client, token, &kept_import).await;
    let location_uuid = uuid_of(&location.json["identity"]);
    let asset_uuid = uuid_of(&asset.json["identity"]);

    // A valid JSON body for each documented operation that takes one.
    let valid_body = |operation_id: &str| -> Value {
        match operation_id {
            "Locations_Create" => json!({
                "display_name": "Yard", "description": "north gate",
                "latitude": 51.5, "longitude": -0.12, "attributes": {"site": "north"}
            }),
            "Assets_Create" => json!({
                "behaviours": ["RecordEvidence"], "attributes": {"arc_display_name": "valve"},
                "public": false
            }),
            "Events_Create" => json!({
                "behaviour": "RecordEvidence", "operation": "Record",
                "event_attributes": {"arc_display_type": "Inspection"},
                "asset_attributes": {"inspected": "yes"},
                "timestamp_declared": "2024-05-06T07:08:09Z",
                "principal_declared": {"issuer": "idp.example", "subject": "inspector"}
            }),
            "IoTHubGDR_CreateIoTHubGDRConnection" => json!({
                "display_name": "documented", "secret": hub.iothub_connection_string(),
                "arc_home_location_identity": location.json["identity"]
            }),
            other => panic!("no valid body for {other}: add one to this test"),
        }
    };
    let valid_form = || {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), app.client_id.clone()),
            ("client_secret".to_owned(), app.client_secret.clone()),
        ]
    };

    let operations = spec.operations();
    assert!(operations.len() >= 18, "{operations:?}");
    // Deletes last, so the identities stay for the other calls.
    let mut ordered = operations.clone();
    ordered.sort_by_key(|(_, method)| method == "delete");
    for (path, method) in &ordered {
        let operation = spec.operation(path, method);
        let operation_id = operation["operationId"].as_str().expect("operationId");
        let uuid = if path.starts_with("/archivist/v2/locations/") {
            location_uuid.as_str()
        } else if path.starts_with("/archivist/v2/assets/") {
            asset_uuid.as_str()
        } else if method == "delete" {
            deleted_import.as_str()
        } else {
            kept_import.as_str()
        };
        let concrete = path
            .replace("{uuid}", uuid)
            .replace("{event_uuid}", &event_uuid);
        let is_form = operation["consumes"][0] == "application/x-www-form-urlencoded";
        let body_schema = spec.body_schema(path, method);
        let valid = || match (is_form, body_schema) {
            (true, _) => Body::Form(valid_form()),
            (false, Some(schema)) => {
                let body = valid_body(operation_id);
                spec.assert_matches(schema, &body, &format!("the test's body of {operation_id}"));
                Body::Json(body)
            }
            (false, None) => Body::None,
        };
        let is_list = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|parameter| parameter["name"] == "page_token");
        let bearer = spec.is_secured(path, method).then_some(token);

        // The valid request: 200, and its body as documented.
        let query_path = if is_list {
            format!("{concrete}?page_size=1")
        } else {
            concrete.clone()
        };
        let headers: &[(&str, &str)] = if is_list {
            &[("X-Request-Total-Count", "true")]
        } else {
            &[]
        };
        let answer = client
            .send(method, &query_path, bearer, headers, valid())
            .await;
        spec.assert_documented(path, method, &answer);
        assert_eq!(answer.status, 200, "{method} {concrete}: {}", answer.text);

        if is_list {
            // Page two through the token alone; the total count header as documented.
            let total = answer.headers.get("x-total-count").expect("X-Total-Count");
            let total: u64 = total.to_str().unwrap().parse().unwrap();
            assert!(total >= 2, "{concrete}: X-Total-Count {total}");
            let response = &operation["responses"]["200"];
            assert!(response["headers"]["X-Total-Count"].is_object());
            let next = answer.json["next_page_token"].as_str().expect("next token");
            let page_two = format!("{concrete}?page_token={next}");
            let answer = client
                .send(method, &page_two, bearer, &[], Body::None)
                .await;
            spec.assert_documented(path, method, &answer);
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert!(answer.headers.get("x-total-count").is_none());
            // Documented 400: a page size out of range.
            let bad = format!("{concrete}?page_size=0");
            let answer = client.send(method, &bad, bearer, &[], Body::None).await;
            spec.assert_documented(path, method, &answer);
            assert_eq!(answer.status, 400);
        }

        if let Some(token) = bearer {
            // No token, and a token that is not one: 401, documented.
            for auth in [None, Some("not-a-token")] {
                let answer = client.send(method, &concrete, auth, &[], valid()).await;
                spec.assert_documented(path, method, &answer);
                assert_eq!(answer.status, 401, "{method} {concrete}: {}", answer.text);
            }
            // An identity that does not exist: 404 from the handler, documented.
            if path.contains("{uuid}") {
                for missing in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
                    let unknown = path
                        .replace("{uuid}", &missing)
                        .replace("{event_uuid}", &event_uuid);
                    let answer = client
                        .send(method, &unknown, Some(token), &[], valid())
                        .await;
                    spec.assert_documented(path, method, &answer);
                    assert_eq!(answer.status, 404, "{method} {unknown}: {}", answer.text);
                }
            }
        }

        if is_form {
            let wrong_secret = vec![
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("client_id".to_owned(), app.client_id.clone()),
                ("client_secret".to_owned(), "wrong".to_owned()),
            ];
            for (form, status) in [(vec![], 400), (wrong_secret, 401)] {
                let answer = client
                    .send(method, &concrete, None, &[], Body::Form(form))
                    .await;
                spec.assert_documented(path, method, &answer);
                assert_eq!(answer.status, status, "{}", answer.text);
            }
        }

        if let Some(schema) = body_schema {
            let base = valid_body(operation_id);
            let mut invalid = Vec::new();
            // What the document forbids must be refused with a documented 400.
            if schema["additionalProperties"] == json!(false) {
                let mut body = base.clone();
                body["not_a_documented_field"] = json!(1);
                invalid.push(Body::Json(body));
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let mut body = base.clone();
                body.as_object_mut()
                    .unwrap()
                    .remove(required.as_str().unwrap());
                invalid.push(Body::Json(body));
            }
            for (name, property) in schema["properties"].as_object().unwrap() {
                if let Some(max) = property["maxLength"].as_u64() {
                    let mut body = base.clone();
                    body[name] = json!("x".repeat(max as usize + 1));
                    invalid.push(Body::Json(body));
                }
            }
            invalid.push(Body::Raw("{not json".to_owned()));
            assert!(invalid.len() >= 2, "{operation_id}");
            for body in invalid {
                let answer = client.send(method, &concrete, bearer, &[], body).await;
                spec.assert_documented(path, method, &answer);
                assert_eq!(answer.status, 400, "{operation_id}: {}", answer.text);
            }
        }

        if is_form || body_schema.is_some() {
            // Over the body limit: a documented 413.
            let huge = format!("{{\"display_name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
            let answer = client
                .send(method, &concrete, bearer, &[], Body::Raw(huge))
                .await;
            spec.assert_documented(path, method, &answer);
            assert_eq!(answer.status, 413, "{operation_id}");
        }
    }

    // After DELETE answered the documented `{}`, GET answers a documented 404.
    let path = "/archivist/v2/iothubgdr/{uuid}";
    let gone = path.replace("{uuid}", &deleted_import);
    let answer = client
        .send("get", &gone, Some(token), &[], Body::None)
        .await;
    spec.assert_documented(path, "get", &answer);
    assert_eq!(answer.status, 404);

    // A finished import, with its device count, and the error operation of a secret that
    // is no connection string: both as documented.
    let finished = wait_done(&client, token, &kept_import).await;
    spec.assert_matches(
        &spec.definition("v2OperationResponse"),
        &finished,
        "a finished import",
    );
    assert_eq!(finished["result"]["status"], "STATUS_FINISHED");
    assert_eq!(finished["result"]["number_assets_imported"], json!(5));
    assert_eq!(finished["result"]["number_devices_total"], json!(5));
    assert!(finished["timestamp_finished"].is_string());
    let failed = client
        .send(
            "post",
            "/archivist/v2/iothubgdr",
            Some(token),
            &[],
            Body::Json(json!({"display_name": "bad", "secret": "not a connection string"})),
        )
        .await;
    spec.assert_documented("/archivist/v2/iothubgdr", "post", &failed);
    assert_eq!(
        failed.json["error"]["error_message"],
        "invalid secret provided"
    );
    let path = format!(
        "/archivist/v2/iothubgdr/{}",
        uuid_of(&failed.json["identity"])
    );
    let again = client
        .send("get", &path, Some(token), &[], Body::None)
        .await;
    spec.assert_documented("/archivist/v2/iothubgdr/{uuid}", "get", &again);
    // Cancelling a failed import returns it unchanged, as documented.
    let cancelled = client
        .send(
            "post",
            &format!("{path}:cancel"),
            Some(token),
            &[],
            Body::None,
        )
        .await;
    spec.assert_documented("/archivist/v2/iothubgdr/{uuid}:cancel", "post", &cancelled);
    assert_eq!(cancelled.json, failed.json);

    // Every response schema the document defines was met by a real answer (request bodies
    // are checked above; `protobufAny` only describes the always empty `details`).
    let exercised = spec.exercised.lock().unwrap().clone();
    for name in spec.doc["definitions"].as_object().unwrap().keys() {
        if name != "protobufAny" {
            assert!(exercised.contains(name), "no answer exercised {name}");
        }
    }
    // Paths the document does not list answer the documented fallback.
    let answer = client
        .send(
            "get",
            "/archivist/v2/nothing-here",
            Some(token),
            &[],
            Body::None,
        )
        .await;
    assert_eq!(answer.status, 404);
    spec.assert_matches(
        &spec.definition("runtimeError"),
        &answer.json,
        "the 404 fallback",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_status_enum_is_what_the_server_emits() {
    // A slow hub, so the import is seen in progress before it is cancelled.
    let hub = emulator(
        40,
        Faults {
            latency: Duration::from_millis(150),
            page_size_cap: Some(2),
            ..Faults::default()
        },
    )
    .await;
    let (_files, server) = server_for(&hub);
    let client = Client {
        server_url: server.url().to_owned(),
        http: server.client(),
    };
    let spec = fetch_spec(&client).await;
    let token = server.tenant_token("acme").await;
    let token = token.as_str();
    let documented: BTreeSet<String> = spec.doc["definitions"]["OperationResultStatus"]["enum"]
        .as_array()
        .expect("status enum")
        .iter()
        .map(|status| status.as_str().expect("string").to_owned())
        .collect();
    let mut seen = BTreeSet::new();
    let operation_schema = spec.definition("v2OperationResponse");
    let mut record = |operation: &Value, what: &str| {
        spec.assert_matches(&operation_schema, operation, what);
        if let Some(status) = operation["result"]["status"].as_str() {
            seen.insert(status.to_owned());
        }
    };

    let create = |display_name: &'static str| {
        let body = json!({"display_name": display_name, "secret": hub.iothub_connection_string()});
        client.send(
            "post",
            "/archivist/v2/iothubgdr",
            Some(token),
            &[],
            Body::Json(body),
        )
    };
    let slow = create("slow").await;
    assert_eq!(slow.status, 200, "{}", slow.text);
    record(&slow.json, "a new import");
    assert_eq!(slow.json["result"]["status"], "STATUS_PENDING");
    assert!(slow.json["timestamp_finished"].is_null());
    let uuid = uuid_of(&slow.json["identity"]);
    let path = format!("/archivist/v2/iothubgdr/{uuid}");

    let started = Instant::now();
    loop {
        let answer = client
            .send("get", &path, Some(token), &[], Body::None)
            .await;
        record(&answer.json, "an import being watched");
        if answer.json["result"]["status"] == "STATUS_INPROGRESS" {
            break;
        }
        assert_ne!(
            answer.json["done"],
            json!(true),
            "done before seen in progress"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never in progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = client
        .send(
            "post",
            &format!("{path}:cancel"),
            Some(token),
            &[],
            Body::None,
        )
        .await;
    spec.assert_documented("/archivist/v2/iothubgdr/{uuid}:cancel", "post", &cancelled);
    record(&cancelled.json, "a cancelled import");
    let cancelled = wait_done(&client, token, &uuid).await;
    record(&cancelled, "a cancelled import, done");
    assert_eq!(cancelled["result"]["status"], "STATUS_CANCELLED");

    let quick = create("quick").await;
    let finished = wait_done(&client, token, &uuid_of(&quick.json["identity"])).await;
    record(&finished, "a finished import");
    assert_eq!(finished["result"]["status"], "STATUS_FINISHED");

    let list = client
        .send(
            "get",
            "/archivist/v2/iothubgdr",
            Some(token),
            &[],
            Body::None,
        )
        .await;
    spec.assert_documented("/archivist/v2/iothubgdr", "get", &list);
    for operation in list.json["operations"].as_array().expect("operations") {
        record(operation, "a listed import");
    }

    assert_eq!(seen, documented, "statuses seen vs. documented");
    // And no status the handler can name is missing from the document (a failed import
    // has `error`, no status).
    let handler = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../iothubgdr-api/src/routes/iothubgdr.rs"
    ))
    .expect("read the handler source");
    let named: BTreeSet<String> = handler
        .split('"')
        .filter(|piece| {
            piece.starts_with("STATUS_")
                && piece[7..]
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(
        named, documented,
        "statuses the handler names vs. documented"
    );
}

/// Paths served for browsers, not part of the API: the document leaves them out on purpose.
const NON_API_PREFIXES: &[&str] = &["/console"];

/// Every `(path, method)` the router serves, read from the router's source: each
/// `.route("<path>", get(..).post(..))` of the API crate and the binary. A mount the reader
/// does not understand (`nest`, `route_service`, `nest_service`, a path that is no literal)
/// fails the test instead of being skipped, unless it is under a [`NON_API_PREFIXES`] path.
fn served_routes() -> BTreeSet<(String, String)> {
    fn sources(dir: &std::path::Path, found: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("read source dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                found.push((path, text));
            }
        }
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut files = Vec::new();
    for dir in ["iothubgdr-api/src", "iothubgdr/src"] {
        sources(&std::path::Path::new(root).join(dir), &mut files);
    }
    let mut routes = BTreeSet::new();
    for (file, text) in &files {
        // Code after `#[cfg(test)]` builds test routers, not the served one.
        let text = text.split("#[cfg(test)]").next().expect("text");
        for mount in [".nest(", ".nest_service(", ".route_service("] {
            for (at, _) in text.match_indices(mount) {
                let rest = text[at + mount.len()..].trim_start();
                let literal = rest.strip_prefix('"').and_then(|r| r.split('"').next());
                assert!(
                    literal.is_some_and(|path| {
                        NON_API_PREFIXES
                            .iter()
                            .any(|prefix| path.starts_with(prefix))
                    }),
                    "{}: a mount this test cannot read: {}",
                    file.display(),
                    &rest[..rest.len().min(80)]
                );
            }
        }
        for (at, _) in text.match_indices(".route(") {
            let rest = text[at + ".route(".len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                panic!(
                    "{}: a route whose path is no literal: {}",
                    file.display(),
                    &rest[..rest.len().min(80)]
                );
            };
            let (path, rest) = rest.split_once('"').expect("closing quote");
            // The method router runs to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("end of .route(");
            let methods = &rest[..end];
            if NON_API_PREFIXES
                .iter()
                .any(|prefix| path.starts_with(prefix))
            {
                continue;
            }
            let mut any = false;
            for method in ["get", "post", "put", "patch", "delete"] {
                let calls = [
                    format!(" {method}("),
                    format!(".{method}("),
                    format!(",{method}("),
                ];
                if calls.iter().any(|call| methods.contains(call.as_str()))
                    || methods.trim_start().starts_with(&format!("{method}("))
                {
                    routes.insert((path.to_owned(), method.to_owned()));
                    any = true;
                }
            }
            assert!(
                any,
                "{}: no method read for {path}: {methods}",
                file.display()
            );
        }
    }
    routes
}

/// `{id}`, `{uuid}` … → `{}`; a custom verb after a parameter (`{uuid}:cancel`) is the same
/// axum route as the parameter alone, told apart by method.
fn route_shape(path: &str) -> String {
    let mut shape = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                shape.push_str("{}");
            }
            '}' => in_param = false,
            _ if !in_param => shape.push(c),
            _ => {}
        }
    }
    match shape.rsplit_once("{}:") {
        Some((head, verb)) if verb.chars().all(|c| c.is_ascii_lowercase()) => format!("{head}{{}}"),
        _ => shape,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_the_router_serves_is_documented() {
    let served = served_routes();
    // The reader found the routes everyone knows about: it reads the source it should.
    for known in [
        ("/archivist/v2/iothubgdr", "post"),
        ("/archivist/v2/iothubgdr/{id}", "delete"),
        ("/archivist/iam/v1/appidp/token", "post"),
        ("/readyz", "get"),
    ] {
        assert!(
            served.contains(&(known.0.to_owned(), known.1.to_owned())),
            "{known:?} not read from the router: {served:?}"
        );
    }
    let server = TestServer::start();
    let client = Client {
        server_url: server.url().to_owned(),
        http: server.client(),
    };
    let spec = fetch_spec(&client).await;
    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .into_iter()
        .map(|(path, method)| (route_shape(&path), method))
        .collect();
    let mut undocumented = Vec::new();
    for (path, method) in &served {
        // Served for real: not the router's 404 or 405 (an unknown id, no token, no body
        // are all fine here).
        let concrete = route_shape(path).replace("{}", "00000000-0000-4000-8000-000000000000");
        let answer = client.send(method, &concrete, None, &[], Body::None).await;
        assert_ne!(answer.status, 405, "{method} {path}: {}", answer.text);
        assert_ne!(
            answer.json["message"], "no such route",
            "{method} {path} is not served"
        );
        if !documented.contains(&(route_shape(path), method.clone())) {
            undocumented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(
        undocumented.is_empty(),
        "served but not in the OpenAPI document: {undocumented:?}"
    );
}
