//! `sheets.lookup` against the fake Google Sheets + OAuth server: rows found by header, ragged
//! rows, absent `values`, typed errors, and OAuth tokens refreshed by the host.

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
    let dir = tempfile::tempdir().unwrap();
    let manifest = install(dir.path(), "sheets", |m| local(m, server));
    let (host, _) = host_with(secrets);
    host.load(&manifest).unwrap();
    (host, dir)
}

/// A server accepting [`GOOD_TOKEN`] and a host holding it.
fn ready() -> (Server, PluginHost, Arc<MemorySecrets>, tempfile::TempDir) {
    let server = Server::start(GOOD_TOKEN);
    let secrets = Arc::new(MemorySecrets::new());
    secrets
        .put(
            "google_sheets",
            oauth(&server, GOOD_TOKEN, in_an_hour(), server::REFRESH_TOKEN),
        )
        .unwrap();
    let (host, dir) = sheets_host(&server, secrets.clone());
    (server, host, secrets, dir)
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
    let form: Vec<(String, String)> = url::form_urlencoded::parse(refreshes[0].body.as_bytes())
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
    let server = Server::start(GOOD_TOKEN);
    let (host, _dir) = sheets_host(&server, Arc::new(MemorySecrets::new()));
    let err = lookup(&host, find("Sheet1!A1:D5", "Item", json!("Door"))).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("google_sheets")),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}
