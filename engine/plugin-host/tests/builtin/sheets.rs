//! `sheets.lookup` against the fake Google Sheets + OAuth server: rows found by header, ragged
//! rows, absent `values`, typed errors, OAuth tokens refreshed by the host, and answers cached
//! for `cache_seconds`; and against a local CSV (the shipped `orders.csv`, read by the host),
//! with no Google account.

use std::sync::Arc;

use influxify_plugin_host::{MemorySecrets, OauthToken, PluginError, PluginHost, Secret};
use serde_json::json;

use crate::server::{self, Server};
use crate::*;

/// An access token that is neither expired nor refreshed.
const GOOD_TOKEN: &str = "ya29.good-token";
/// An hour from now, in ms since the Unix epoch.
fn in_an_hour() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000
}

/// The OAuth secret `google_sheets` with access token `access`, refreshed at `server`.
fn oauth(server: &Server, access: &str, expires_at_ms: u64, refresh: &str) -> Secret {
    Secret::Oauth(OauthToken {
        access_token: access.into(),
        expires_at_ms,
        refresh_token: refresh.into(),
        token_url: server.token_url(),
        client_id: server::CLIENT_ID.into(),
        client_secret: Some(server::CLIENT_SECRET.into()),
    })
}

/// The shipped manifest, granted the local server instead of Google and pointed at it.
fn local(manifest: String, server: &Server) -> String {
    let google = r#"["https://sheets.googleapis.com"]"#;
    let base = r#"base_url = "https://sheets.googleapis.com""#;
    assert_eq!(manifest.matches(google).count(), 2, "{manifest}");
    assert!(manifest.contains(base), "{manifest}");
    manifest
        .replace(google, r#"["http://127.0.0.1:*"]"#)
        .replace(base, &format!("base_url = \"{}\"", server.url))
}

/// A host with `sheets` installed against `server` and `secrets`.
fn sheets_host(server: &Server, secrets: Arc<MemorySecrets>) -> (PluginHost, tempfile::TempDir) {
    sheets_host_edited(server, secrets, |m| m)
}

/// A host with `sheets` installed against `server` and `secrets`, its manifest further edited.
fn sheets_host_edited(
    server: &Server,
    secrets: Arc<MemorySecrets>,
    edit: impl FnOnce(String) -> String,
) -> (PluginHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "sheets", |m| edit(local(m, server)));
    let (host, _) = host_with(secrets);
    host.load(&manifest).unwrap();
    (host, dir)
}

/// The secret `google_sheets` holding [`GOOD_TOKEN`], refreshed at `server`.
fn good_secrets(server: &Server) -> Arc<MemorySecrets> {
    let secrets = Arc::new(MemorySecrets::new());
    secrets
        .put(
            "google_sheets",
            oauth(server, GOOD_TOKEN, in_an_hour(), server::REFRESH_TOKEN),
        )
        .unwrap();
    secrets
}

/// A server accepting [`GOOD_TOKEN`] and a host holding it.
fn ready() -> (Server, PluginHost, Arc<MemorySecrets>, tempfile::TempDir) {
    let server = Server::start(GOOD_TOKEN);
    let secrets = good_secrets(&server);
    let (host, dir) = sheets_host(&server, secrets.clone());
    (server, host, secrets, dir)
}

/// Sets `key` in the manifest's `[config]` (replacing the line that sets it, if any).
fn setting(manifest: String, key: &str, value: &str) -> String {
    let line = format!("{key} = {value}");
    let mut lines: Vec<String> = manifest.lines().map(str::to_string).collect();
    if let Some(at) = lines
        .iter()
        .position(|l| l.starts_with(&format!("{key} =")))
    {
        lines[at] = line;
    } else {
        let at = lines.iter().position(|l| l.trim() == "[config]").unwrap();
        lines.insert(at + 1, line);
    }
    lines.join("\n") + "\n"
}

fn lookup(host: &PluginHost, input: serde_json::Value) -> Result<Invocation, PluginError> {
    call(host, "sheets.lookup", &input)
}

/// A look-up of `value` in column `column` of `range` in the known spreadsheet.
fn find(range: &str, column: &str, value: serde_json::Value) -> serde_json::Value {
    json!({"spreadsheet": server::SPREADSHEET, "range": range, "column": column, "value": value})
}

#[test]
fn the_shipped_manifest_loads_with_the_catalog_s_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "sheets", |m| m);
    let (host, _) = host();
    let plugin = host.load(&manifest).unwrap();
    let names: Vec<&str> = plugin.actions().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["lookup"]);
    let builtin = influxify_core::Catalog::builtin();
    assert_eq!(
        host.catalog().get("sheets.lookup").unwrap().outcomes,
        builtin.get("sheets.lookup").unwrap().outcomes
    );
    let schema = &host.catalog().actions["sheets.lookup"].input_schema;
    let mut required: Vec<&str> = schema.as_ref().unwrap()["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["column", "range", "spreadsheet", "value"]);
}

#[test]
fn finds_a_row_by_header_with_the_host_s_bearer_token() {
    let (server, host, _, _dir) = ready();
    let answer = lookup(&host, find("Sheet1!A1:D5", "Item", json!("Door"))).unwrap();
    assert_eq!(answer.outcome, "ok");
    let door = json!({"Item": "Door", "Cost": "$15", "Stocked": "2", "Ship Date": "3/15/2016"});
    assert_eq!(
        output(&answer),
        json!({"row": door, "rows": [door], "count": 1, "range": "Sheet1!A1:D5"})
    );
    let reads = server.reads();
    assert_eq!(reads.len(), 1);
    assert_eq!(
        reads[0].line,
        format!(
            "GET /v4/spreadsheets/{}/values/Sheet1%21A1%3AD5?majorDimension=ROWS HTTP/1.1",
            server::SPREADSHEET
        )
    );
    assert_eq!(
        reads[0].header("authorization"),
        Some(format!("Bearer {GOOD_TOKEN}").as_str())
    );
    assert!(server.refreshes().is_empty());
    // Numbers are compared as text; headers are found ignoring case.
    let answer = lookup(&host, find("Sheet1!A1:D5", "stocked", json!(4))).unwrap();
    assert_eq!(output(&answer)["row"]["Item"], "Wheel");
}

#[test]
fn ragged_rows_get_empty_fields_and_every_match_is_counted() {
    let (_server, host, _, _dir) = ready();
    // The order-status flow's call, as flows/order-status/order-status.yaml makes it.
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(answer.outcome, "ok");
    assert_eq!(
        output(&answer)["row"],
        json!({"Order": "A-1002", "Status": "Processing", "Ship Date": "2026-01-03", "Carrier": "", "Tracking URL": ""})
    );
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-1004"))).unwrap();
    assert_eq!(output(&answer)["row"]["Status"], "");

    // Two rows match: `row` is the first, `rows` has both in sheet order.
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-1001"))).unwrap();
    let out = output(&answer);
    assert_eq!(out["count"], 2);
    assert_eq!(out["row"]["Status"], "Shipped");
    assert_eq!(
        out["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Shipped", "Returned"]
    );
    assert_eq!(out["range"], "Orders!A1:E7");
    let mut limited = find("Orders!A:E", "Order", json!("A-1001"));
    limited["limit"] = json!(1);
    let out = output(&lookup(&host, limited).unwrap());
    assert_eq!(
        (out["count"].clone(), out["rows"].as_array().unwrap().len()),
        (json!(2), 1)
    );

    // Exact by default; case-insensitive on request.
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-1003"))).unwrap();
    assert_eq!(answer.outcome, "not_found");
    let mut any_case = find("Orders!A:E", "Order", json!("A-1003"));
    any_case["case_insensitive"] = json!(true);
    let answer = lookup(&host, any_case).unwrap();
    assert_eq!(answer.outcome, "ok");
    assert_eq!(output(&answer)["row"]["Carrier"], "UPS");
}

#[test]
fn quoted_tab_names_are_percent_encoded() {
    let (server, host, _, _dir) = ready();
    let answer = lookup(&host, find("'My Sheet'!A:B", "Name", json!("Bo"))).unwrap();
    assert_eq!(
        output(&answer)["row"],
        json!({"Name": "Bo", "Plan": "Free"})
    );
    assert!(
        server.reads()[0]
            .line
            .contains("/values/%27My%20Sheet%27%21A%3AB?"),
        "{}",
        server.reads()[0].line
    );
}

#[test]
fn no_match_and_an_empty_range_are_not_found() {
    let (_server, host, _, _dir) = ready();
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-9999"))).unwrap();
    assert_eq!(answer.outcome, "not_found");
    assert_eq!(
        output(&answer),
        json!({"rows": [], "count": 0, "range": "Orders!A1:E7"})
    );
    // `values` is absent for an empty range.
    let answer = lookup(&host, find("Empty!A:Z", "Order", json!("A-1001"))).unwrap();
    assert_eq!(answer.outcome, "not_found");
    assert_eq!(output(&answer)["range"], "Empty!A1:Z1000");
}

#[test]
fn bad_inputs_are_invalid_and_an_unknown_column_names_the_headers() {
    let (server, host, _, _dir) = ready();
    let err = lookup(&host, find("Sheet1!A1:D5", "Price", json!("Door"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m)
            if m.contains("`Price`") && m.contains("`Item`, `Cost`, `Stocked`, `Ship Date`")),
        "{err:?}"
    );
    let reads = server.reads().len();
    for input in [
        find("Sheet1!A1:D5", "Item", json!("  ")),
        find("Sheet1!A1:D5", "", json!("Door")),
        find("..", "Item", json!("Door")),
        json!({"spreadsheet": "../../x", "range": "Sheet1", "column": "Item", "value": "Door"}),
        json!({"spreadsheet": "1", "range": "Sheet1", "column": "Item", "value": "Door", "colum": "x"}),
        json!({"spreadsheet": "1", "range": "Sheet1", "column": "Item", "value": ["Door"]}),
        json!({"spreadsheet": "1", "range": "Sheet1", "column": "Item", "value": "Door", "limit": 0}),
    ] {
        let err = lookup(&host, input.clone()).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidInput(_)),
            "{input}: {err:?}"
        );
    }
    assert_eq!(server.reads().len(), reads, "no request for a bad input");
}

#[test]
fn a_missing_tab_is_a_permanent_error_naming_the_range() {
    let (_server, host, _, _dir) = ready();
    let err = lookup(&host, find("Nope!A:E", "Order", json!("A-1001"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m)
            if m.contains("`Nope!A:E`")
                && m.contains("Unable to parse range: Nope!A:E")
                && m.contains("INVALID_ARGUMENT")),
        "{err:?}"
    );
}

#[test]
fn forbidden_and_missing_spreadsheets_are_permanent() {
    let (_server, host, _, _dir) = ready();
    let mut input = find("Sheet1!A:D", "Item", json!("Door"));
    input["spreadsheet"] = json!(server::FORBIDDEN);
    let err = lookup(&host, input.clone()).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("The caller does not have permission")),
        "{err:?}"
    );
    input["spreadsheet"] = json!("1Gone");
    let err = lookup(&host, input).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("`1Gone`") && m.contains("NOT_FOUND")),
        "{err:?}"
    );
}

#[test]
fn quota_and_server_errors_are_retryable() {
    let (_server, host, _, _dir) = ready();
    let err = lookup(&host, find("Busy!A:E", "Order", json!("A-1001"))).unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("RESOURCE_EXHAUSTED"),
        "{err:?}"
    );
    let err = lookup(&host, find("Broken!A:E", "Order", json!("A-1001"))).unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("Internal error encountered"),
        "{err:?}"
    );
}

#[test]
fn an_expired_token_is_refreshed_by_the_host_and_the_lookup_succeeds() {
    let server = Server::start(server::FRESH_TOKEN);
    let secrets = Arc::new(MemorySecrets::new());
    secrets
        .put(
            "google_sheets",
            oauth(&server, "ya29.expired", 1, server::REFRESH_TOKEN),
        )
        .unwrap();
    let (host, _dir) = sheets_host(&server, secrets.clone());
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(answer.outcome, "ok");

    // Refreshed before the read, with the refresh-token grant; the read carried the new token.
    let refreshes = server.refreshes();
    assert_eq!(refreshes.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&refreshes[0].body)
        .into_owned()
        .collect();
    for (k, v) in [
        ("grant_type", "refresh_token"),
        ("refresh_token", server::REFRESH_TOKEN),
        ("client_id", server::CLIENT_ID),
        ("client_secret", server::CLIENT_SECRET),
    ] {
        assert!(form.contains(&(k.into(), v.into())), "{form:?}");
    }
    let reads = server.reads();
    assert_eq!(reads.len(), 1);
    assert_eq!(
        reads[0].header("authorization"),
        Some(format!("Bearer {}", server::FRESH_TOKEN).as_str())
    );
    // The new token is stored (with its expiry; the refresh token kept) and used next time.
    match secrets.get("google_sheets").unwrap() {
        Some(Secret::Oauth(token)) => {
            assert_eq!(token.access_token, server::FRESH_TOKEN);
            assert_eq!(token.refresh_token, server::REFRESH_TOKEN);
            assert!(token.expires_at_ms > in_an_hour() - 120_000);
        }
        other => panic!("{other:?}"),
    }
    lookup(&host, find("Orders!A:E", "Order", json!("A-1001"))).unwrap();
    assert_eq!(server.refreshes().len(), 1);
}

#[test]
fn a_revoked_token_is_refreshed_once_on_a_401() {
    // Not expired by the clock, but Google no longer takes it.
    let server = Server::start(server::FRESH_TOKEN);
    let secrets = Arc::new(MemorySecrets::new());
    secrets
        .put(
            "google_sheets",
            oauth(&server, "ya29.revoked", in_an_hour(), server::REFRESH_TOKEN),
        )
        .unwrap();
    let (host, _dir) = sheets_host(&server, secrets);
    let answer = lookup(&host, find("Sheet1!A1:D5", "Item", json!("Engine"))).unwrap();
    assert_eq!(output(&answer)["row"]["Ship Date"], "30/20/2016");
    assert_eq!(server.refreshes().len(), 1);
    let auth: Vec<String> = server
        .reads()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer ya29.revoked".to_string(),
            format!("Bearer {}", server::FRESH_TOKEN)
        ]
    );
}

#[test]
fn credentials_refused_after_the_refresh_are_misconfigured() {
    // The refreshed token is refused too (say, the account lost access to the API).
    let server = Server::start("a-token-nobody-has");
    let secrets = Arc::new(MemorySecrets::new());
    secrets
        .put(
            "google_sheets",
            oauth(&server, GOOD_TOKEN, in_an_hour(), server::REFRESH_TOKEN),
        )
        .unwrap();
    let (host, _dir) = sheets_host(&server, secrets);
    let err = lookup(&host, find("Sheet1!A1:D5", "Item", json!("Door"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("google_sheets") && m.contains("UNAUTHENTICATED")),
        "{err:?}"
    );
    // One refresh, two reads: no loop.
    assert_eq!(server.refreshes().len(), 1);
    assert_eq!(server.reads().len(), 2);
}

#[test]
fn a_revoked_grant_is_misconfigured_and_not_retried() {
    let server = Server::start(server::FRESH_TOKEN);
    let secrets = Arc::new(MemorySecrets::new());
    secrets
        .put(
            "google_sheets",
            oauth(&server, "ya29.expired", 1, "1//revoked-refresh-token"),
        )
        .unwrap();
    let (host, _dir) = sheets_host(&server, secrets);
    let err = lookup(&host, find("Sheet1!A1:D5", "Item", json!("Door"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("`google_sheets`") && m.contains("refused")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.refreshes().len(), 1);
    assert!(server.reads().is_empty());
}

#[test]
fn a_missing_secret_is_misconfigured_before_any_request() {
    // With `source = "api"`: without it, no credentials means the local CSV (next test).
    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host_edited(&server, Arc::new(MemorySecrets::new()), |m| {
        setting(m, "source", "\"api\"")
    });
    let err = lookup(&host, find("Sheet1!A1:D5", "Item", json!("Door"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("google_sheets")),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn without_google_credentials_the_shipped_csv_answers() {
    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host(&server, Arc::new(MemorySecrets::new()));
    let found = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(found.outcome, "ok");
    assert!(
        server.requests().is_empty(),
        "no request without credentials"
    );
}

#[test]
fn repeated_lookups_within_cache_seconds_make_one_request() {
    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host_edited(&server, good_secrets(&server), |m| {
        setting(m, "cache_seconds", "\"1\"")
    });
    let first = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    let second = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(
        server.reads().len(),
        1,
        "the second look-up is answered from the cache"
    );
    assert_eq!(output(&first), output(&second));
    assert_eq!(second.usage.http_calls, 0);
    // Another value in the same range: the same cached answer.
    let other = lookup(&host, find("Orders!A:E", "Order", json!("A-1001"))).unwrap();
    assert_eq!(output(&other)["count"], 2);
    assert_eq!(output(&other)["range"], "Orders!A1:E7");
    assert_eq!(server.reads().len(), 1);
    // Another range, or another spreadsheet, is another request.
    lookup(&host, find("Sheet1!A1:D5", "Item", json!("Door"))).unwrap();
    assert_eq!(server.reads().len(), 2);
    let mut forbidden = find("Orders!A:E", "Order", json!("A-1001"));
    forbidden["spreadsheet"] = json!(server::FORBIDDEN);
    assert!(lookup(&host, forbidden).is_err());
    assert_eq!(server.reads().len(), 3);
    // Errors are not cached: a 429 is asked again (the node's retry backs off).
    for _ in 0..2 {
        let err = lookup(&host, find("Busy!A:E", "Order", json!("A-1001"))).unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
    assert_eq!(server.reads().len(), 5);

    // After the TTL, the range is read again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(output(&again), output(&first));
    assert_eq!(server.reads().len(), 6);
    assert_eq!(again.usage.http_calls, 1);
    lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(server.reads().len(), 6);
}

#[test]
fn the_cache_is_shared_by_users_and_off_at_zero_seconds() {
    // Shipped default (30 s): Bo's look-up reuses Ada's answer (the quota is the bot's).
    let (server, host, _, _dir) = ready();
    lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    let answer = call_as(
        &host,
        &user("bo"),
        "sheets.lookup",
        &find("Orders!A:E", "Order", json!("A-1003")),
    )
    .unwrap();
    assert_eq!(answer.outcome, "not_found");
    assert_eq!(server.reads().len(), 1);

    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host_edited(&server, good_secrets(&server), |m| {
        setting(m, "cache_seconds", "\"0\"")
    });
    for _ in 0..3 {
        lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    }
    assert_eq!(server.reads().len(), 3, "no cache");

    // A setting that is not a number of seconds, or too long, is a misconfiguration.
    for bad in ["\"soon\"", "\"86400\""] {
        let (host, _dir) = sheets_host_edited(&server, good_secrets(&server), |m| {
            setting(m, "cache_seconds", bad)
        });
        let err = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap_err();
        assert!(
            matches!(&err, PluginError::Misconfigured(m) if m.contains("cache_seconds")),
            "{err:?}"
        );
    }
}

/// The shipped manifest and `orders.csv`, with no secret and no server.
fn local_host(edit: impl FnOnce(String) -> String) -> (PluginHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "sheets", edit);
    let (host, _) = host();
    host.load(&manifest).unwrap();
    (host, dir)
}

/// A look-up in the `Orders` columns of the local CSV.
fn find_local(value: &str) -> serde_json::Value {
    json!({"spreadsheet": "local", "range": "Orders!A:E", "column": "Order", "value": value})
}

#[test]
fn a_local_csv_lookup_needs_no_google_account() {
    let (host, dir) = local_host(|m| m);
    assert!(dir.path().join("sheets/orders.csv").is_file());
    let answer = lookup(&host, find_local("A-1001")).unwrap();
    assert_eq!(answer.outcome, "ok");
    assert_eq!(answer.usage.http_calls, 0, "no request");
    // The order-status flow's first case reads the same fields from the shipped orders.csv.
    let shipped = json!({"Order": "A-1001", "Status": "Shipped", "Ship Date": "2025-12-30",
        "Carrier": "DHL Express", "Tracking URL": "https://track.example/dhl/JD014600003812345678"});
    assert_eq!(
        output(&answer),
        json!({"row": shipped, "rows": [shipped], "count": 1, "range": "Orders!A1:E7"})
    );
    for (value, status) in [
        ("A-1002", "Processing"),
        ("A-1003", "Delivered"),
        ("A-1004", "Cancelled"),
        ("A-1005", "On hold"),
    ] {
        let answer = lookup(&host, find_local(value)).unwrap();
        assert_eq!(output(&answer)["row"]["Status"], status, "{value}");
    }
    // Empty cells are empty strings; a quoted cell keeps its comma.
    let answer = lookup(&host, find_local("A-1004")).unwrap();
    assert_eq!(output(&answer)["row"]["Carrier"], "");
    let answer = lookup(&host, find_local("A-1006")).unwrap();
    assert_eq!(output(&answer)["row"]["Carrier"], "La Poste, Colissimo");
    // Not found, case, unknown columns: as with the API.
    let answer = lookup(&host, find_local("A-9999")).unwrap();
    assert_eq!(answer.outcome, "not_found");
    assert_eq!(
        output(&answer),
        json!({"rows": [], "count": 0, "range": "Orders!A1:E7"})
    );
    assert_eq!(
        lookup(&host, find_local("a-1002")).unwrap().outcome,
        "not_found"
    );
    let mut any_case = find_local("a-1002");
    any_case["case_insensitive"] = json!(true);
    assert_eq!(lookup(&host, any_case).unwrap().outcome, "ok");
    let mut by_status = find_local("Shipped");
    by_status["column"] = json!("status");
    assert_eq!(output(&lookup(&host, by_status).unwrap())["count"], 2);
    let mut price = find_local("A-1001");
    price["column"] = json!("Price");
    let err = lookup(&host, price).unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidInput(m) if m.contains("`Order`, `Status`, `Ship Date`, `Carrier`, `Tracking URL`")),
        "{err:?}"
    );
    // Ranges cut the table as the API would: two columns, rows 1 to 3.
    let mut narrow = find_local("A-1002");
    narrow["range"] = json!("Orders!A1:B3");
    let out = output(&lookup(&host, narrow).unwrap());
    assert_eq!(
        out["row"],
        json!({"Order": "A-1002", "Status": "Processing"})
    );
    assert_eq!(out["range"], "Orders!A1:B3");
    let mut not_a_range = find_local("A-1002");
    not_a_range["range"] = json!("Orders!E:A");
    let err = lookup(&host, not_a_range).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("`Orders!E:A`")),
        "{err:?}"
    );
}

#[test]
fn with_source_csv_the_order_status_flow_s_lookup_is_answered_from_the_csv() {
    // The flow's own spreadsheet id, the local server granted: nothing reaches it.
    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host_edited(&server, Arc::new(MemorySecrets::new()), |m| {
        setting(m, "source", "\"csv\"")
    });
    let answer = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap();
    assert_eq!(answer.outcome, "ok");
    assert_eq!(
        output(&answer)["row"],
        json!({"Order": "A-1002", "Status": "Processing", "Ship Date": "2026-01-03", "Carrier": "", "Tracking URL": ""})
    );
    assert!(server.requests().is_empty());
    assert_eq!(answer.usage.http_calls, 0);
    // Any other source is a misconfiguration.
    let (host, _dir) = sheets_host_edited(&server, Arc::new(MemorySecrets::new()), |m| {
        setting(m, "source", "\"excel\"")
    });
    let err = lookup(&host, find("Orders!A:E", "Order", json!("A-1002"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("`source`")),
        "{err:?}"
    );
}

/// The fake server's `Orders` tab as CSV (a TOML literal string): ragged rows, an empty line,
/// quoted cells.
const ORDERS_CSV: &str = r#"'''
Order,Status,Ship Date,Carrier,Tracking URL
A-1001,Shipped,2025-12-30,DHL Express,https://track.example/dhl/JD0146
A-1002,Processing,"2026-01-03"

a-1003,Delivered,2025-12-22,UPS
A-1004
"A-1001","Returned",2026-01-10,DHL Express
'''"#;

#[test]
fn a_csv_answers_as_the_api_does_for_the_same_rows() {
    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host_edited(&server, good_secrets(&server), |m| {
        setting(m, "csv", ORDERS_CSV)
    });
    let mut inputs = Vec::new();
    for value in ["A-1001", "A-1002", "A-1003", "A-1004", "A-9999"] {
        inputs.push(find("Orders!A:E", "Order", json!(value)));
    }
    let mut any_case = find("Orders!A:E", "order", json!("A-1003"));
    any_case["case_insensitive"] = json!(true);
    inputs.push(any_case);
    let mut limited = find("Orders!A:E", "Order", json!("A-1001"));
    limited["limit"] = json!(1);
    inputs.push(limited);
    inputs.push(find("Orders!A:E", "Carrier", json!("DHL Express")));
    for api in inputs {
        let mut local = api.clone();
        local["spreadsheet"] = json!("local");
        let from_api = lookup(&host, api.clone()).unwrap();
        let from_csv = lookup(&host, local).unwrap();
        assert_eq!(from_csv.outcome, from_api.outcome, "{api}");
        assert_eq!(output(&from_csv), output(&from_api), "{api}");
    }
    assert_eq!(server.reads().len(), 1, "the API's answer was cached");
    let mut unknown = find("Orders!A:E", "Price", json!("1"));
    let api_err = lookup(&host, unknown.clone()).unwrap_err().to_string();
    unknown["spreadsheet"] = json!("local");
    assert_eq!(lookup(&host, unknown).unwrap_err().to_string(), api_err);
}

#[test]
fn a_missing_or_malformed_csv_is_a_misconfiguration() {
    let (host, _dir) = local_host(|m| setting(m, "csv", "'''\nOrder,Status\n\"A-1,Shipped\n'''"));
    let err = lookup(&host, find_local("A-1")).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("`csv`") && m.contains("line 2")),
        "{err:?}"
    );
    let (host, _dir) = local_host(|m| {
        m.lines()
            .filter(|l| !l.starts_with("csv ="))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let err = lookup(&host, find_local("A-1")).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("`csv`") && m.contains("not set")),
        "{err:?}"
    );
    // Without its file, the shipped manifest does not load, and says why.
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "sheets", |m| m);
    std::fs::remove_file(manifest.with_file_name("orders.csv")).unwrap();
    let err = host.load(&manifest).unwrap_err();
    assert!(
        matches!(&err, PluginError::Load { .. }) && err.to_string().contains("orders.csv"),
        "{err}"
    );
}
