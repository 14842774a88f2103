//! The built-in Google Sheets plugin: `sheets.lookup` finds the rows of a sheet whose column
//! holds a value and returns them as named fields, keyed by the range's header row.
//!
//! It reads the range with the Sheets API v4 (`GET {base_url}/v4/spreadsheets/{id}/values/{range}`,
//! the A1 range percent-encoded) with the OAuth access token of secret `google_sheets` injected
//! by the host as a bearer token. The host refreshes the token itself, before a request when it
//! has expired and once after a 401, so a 401 that reaches the plugin means the credentials
//! are wrong. Answers are cached for `cache_seconds` (default 30) in the plugin-scoped kv, so
//! repeated look-ups stay under Google's read quota.
//!
//! Without a Google account: when the spreadsheet is `local` (or the setting `source` is
//! `csv`), the rows come from the setting `csv`, CSV text whose first row is the header row
//! (`csv = "@file:orders.csv"` in plugin.toml has the host read the file next to the manifest),
//! with the same matching, outputs and outcomes; no request, no secret.

mod a1;
mod cache;
mod csv;
mod table;

use std::collections::BTreeMap;
use std::fmt;

use influxify_plugin_sdk::http::{Placement, Response};
use influxify_plugin_sdk::prelude::*;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// The Sheets API unless the `base_url` setting says otherwise.
const DEFAULT_BASE_URL: &str = "https://sheets.googleapis.com";
/// The OAuth secret whose access token is sent.
const SECRET: &str = "google_sheets";
/// The spreadsheet id that stands for the CSV of the setting `csv`.
const LOCAL: &str = "local";
/// Rows returned in `rows` unless the input's `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// The most rows `rows` may hold (the host caps an output at 1 MiB).
const MAX_LIMIT: u32 = 1000;

/// Finds rows of a Google Sheet by a column's value.
struct Lookup;

/// What to look up.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The spreadsheet's id, from its URL (`https://docs.google.com/spreadsheets/d/{id}/edit`);
    /// `local` for the CSV of the plugin's `csv` setting.
    spreadsheet: String,
    /// The A1 range to read, its first row being the headers: `Orders!A:E`,
    /// `'My Sheet'!A1:F500`.
    range: String,
    /// The header (in the range's first row) of the column to search; matched exactly, else
    /// ignoring case and surrounding spaces.
    column: String,
    /// The value to find. Numbers and booleans are compared as text; it may not be empty.
    value: Scalar,
    /// Compare ignoring case (`a-1001` finds `A-1001`). Default: the exact text.
    #[serde(default)]
    case_insensitive: bool,
    /// At most this many rows in `rows` (default 100, at most 1000); `count` counts them all.
    #[serde(default)]
    limit: Option<u32>,
}

/// A JSON scalar, compared as text.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(text) => text.clone(),
            Scalar::Number(number) => number.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// The matching rows, each as `{header: cell}`: every named header is a field, an empty string
/// where the row has no cell (the API drops trailing empty cells).
#[derive(Serialize, JsonSchema)]
struct Output {
    /// The first matching row; absent on `not_found`.
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<BTreeMap<String, String>>,
    /// The matching rows in sheet order, at most `limit` of them.
    rows: Vec<BTreeMap<String, String>>,
    /// How many rows matched (`rows` may hold fewer).
    count: u32,
    /// The range the API read, in A1 notation (`Orders!A1:E42`).
    range: String,
}

impl Action for Lookup {
    const NAME: &'static str = "lookup";
    const DESCRIPTION: &'static str = "Finds rows of a Google Sheet by a column's value";
    const OUTCOMES: &'static [&'static str] = &["not_found"];
    type Input = Input;
    type Output = Output;

    fn run(input: Input, _ctx: &Context) -> Result<Outcome<Output>, Error> {
        let value = input.value.text();
        check(&input, &value)?;
        let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::invalid_input(format!(
                "limit is {limit}; it must be between 1 and {MAX_LIMIT}"
            )));
        }
        let sheet = if local(&input.spreadsheet)? {
            from_csv(&input.range)?
        } else {
            secrets::require(SECRET)?;
            cache::through(&input.spreadsheet, &input.range, || {
                read(&input.spreadsheet, &input.range)
            })?
        };
        let answered = if sheet.range.is_empty() {
            input.range.clone()
        } else {
            sheet.range
        };
        let mut rows = sheet.values.into_iter();
        let Some(headers) = rows.next() else {
            warn!("the range `{}` is empty (no header row)", input.range);
            return Ok(not_found(answered));
        };
        let Some(column) = table::column(&headers, &input.column) else {
            return Err(Error::invalid_input(format!(
                "column `{}` is not a header of range `{}`; its headers are {}",
                input.column,
                input.range,
                table::list(&headers)
            )));
        };

        let mut found = Vec::new();
        let mut count = 0u32;
        for row in rows {
            let cell = row.get(column).map_or("", String::as_str);
            if table::matches(cell, &value, input.case_insensitive) {
                count = count.saturating_add(1);
                if found.len() < limit as usize {
                    found.push(table::record(&headers, &row));
                }
            }
        }
        if found.is_empty() {
            return Ok(not_found(answered));
        }
        Ok(Outcome::ok(Output {
            row: found.first().cloned(),
            rows: found,
            count,
            range: answered,
        }))
    }
}

influxify_plugin_sdk::plugin!(Sheets: [Lookup]);

fn not_found(range: String) -> Outcome<Output> {
    Outcome::named(
        "not_found",
        Output {
            row: None,
            rows: Vec::new(),
            count: 0,
            range,
        },
    )
}

/// Refuses what cannot be a look-up, before any request.
fn check(input: &Input, value: &str) -> Result<(), Error> {
    let id = &input.spreadsheet;
    if id.is_empty()
        || id.len() > 200
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid_input(format!(
            "spreadsheet `{id}` is not a spreadsheet id (letters, digits, `-` and `_`, as in the sheet's URL)"
        )));
    }
    let range = &input.range;
    if range.len() > 1000
        || range.chars().any(char::is_control)
        || !range.chars().any(char::is_alphanumeric)
    {
        return Err(Error::invalid_input(format!(
            "range `{range}` is not an A1 range (such as `Sheet1!A:E`)"
        )));
    }
    if input.column.trim().is_empty() {
        return Err(Error::invalid_input("column is empty"));
    }
    if value.trim().is_empty() {
        // An empty value would find the rows whose cell is blank: never what a look-up means.
        return Err(Error::invalid_input("value is empty"));
    }
    Ok(())
}

/// A range's rows, as the API or the CSV gave them.
pub(crate) struct Sheet {
    /// The range read, in A1 notation (empty when the API does not say).
    pub(crate) range: String,
    /// Its rows, ragged: trailing empty cells may be missing.
    pub(crate) values: Vec<Vec<String>>,
}

/// Whether the rows come from the `csv` setting: for the spreadsheet `local`; for any when the
/// setting `source` is `csv`; and, by default (no `source`), when no Google credentials are
/// configured but a CSV is, so that a bot designer can try a look-up flow without an account.
fn local(spreadsheet: &str) -> Result<bool, Error> {
    if spreadsheet == LOCAL {
        return Ok(true);
    }
    match config::get("source").as_deref().map(str::trim) {
        None | Some("") => Ok(!secrets::available(SECRET) && config::get("csv").is_some()),
        Some("api") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(Error::misconfigured(format!(
            "the setting `source` is `{other}`; it must be `api` (Google Sheets) or `csv` (the rows of the setting `csv`)"
        ))),
    }
}

/// `range` of the CSV in the setting `csv` (the table stands for whichever tab is named).
fn from_csv(range: &str) -> Result<Sheet, Error> {
    let Some(text) = config::get("csv") else {
        return Err(Error::misconfigured(
            "the rows come from the setting `csv`, which is not set (put `csv = \"@file:orders.csv\"` in plugin.toml's [config], the file next to it, header row first)",
        ));
    };
    if text.starts_with("@file:") {
        return Err(Error::misconfigured(format!(
            "the setting `csv` is `{}`: the host did not read that file (a host of this version reads `@file:` settings when it loads the plugin)",
            text.chars().take(200).collect::<String>()
        )));
    }
    let table = csv::parse(&text).map_err(|why| {
        Error::misconfigured(format!("the setting `csv` is not valid CSV: {why}"))
    })?;
    let Some((answered, values)) = a1::read(range, &table) else {
        return Err(Error::permanent(format!(
            "the range `{range}` of the local CSV is not an A1 range (such as `Orders!A:E`, `A1:E50` or a tab name)"
        )));
    };
    Ok(Sheet {
        range: answered,
        values,
    })
}

/// What `values.get` answers: `values` is absent for an empty range, and rows are ragged.
#[derive(Deserialize)]
struct ValueRange {
    #[serde(default)]
    range: String,
    #[serde(default)]
    values: Vec<Row>,
}

/// A row's cells as text (formatted values are strings; numbers and booleans are accepted too).
struct Row(Vec<String>);

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cells = Vec::<Cell>::deserialize(deserializer)?;
        Ok(Row(cells.into_iter().map(|c| c.0).collect()))
    }
}

struct Cell(String);

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CellVisitor;

        impl Visitor<'_> for CellVisitor {
            type Value = Cell;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cell value")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Cell, E> {
                Ok(Cell(v))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
                Ok(Cell(if v { "TRUE" } else { "FALSE" }.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell(String::new()))
            }
        }

        deserializer.deserialize_any(CellVisitor)
    }
}

/// Reads `range` of spreadsheet `id` with the API.
fn read(id: &str, range: &str) -> Result<Sheet, Error> {
    let base = config::get_or("base_url", DEFAULT_BASE_URL);
    let base = base.trim_end_matches('/');
    let url = format!(
        "{base}/v4/spreadsheets/{}/values/{}",
        encode(id),
        encode(range)
    );
    let response = http::get(url)
        .query("majorDimension", "ROWS")
        .header("Accept", "application/json")
        .secret(SECRET, Placement::Bearer)
        .send()
        .map_err(refused_grant)?;
    if !response.is_success() {
        return Err(failure(&response, id, range));
    }
    let answer = response
        .json::<ValueRange>()
        .map_err(|e| e.context(format_args!("reading range `{range}`")))?;
    Ok(Sheet {
        range: answer.range,
        values: answer.values.into_iter().map(|row| row.0).collect(),
    })
}

/// The host reports a token refresh the provider refused (`invalid_grant`: a revoked or
/// expired refresh token) as a transport error; retrying will not fix it, an operator must.
fn refused_grant(error: Error) -> Error {
    match error {
        Error::Retryable(message)
            if message.contains("refreshing OAuth secret") && message.contains("status 4") =>
        {
            Error::misconfigured(format!(
                "the OAuth grant of secret `{SECRET}` was refused (revoked or expired? connect the Google account again): {message}"
            ))
        }
        other => other,
    }
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
#[derive(Deserialize)]
struct GoogleError {
    error: GoogleErrorBody,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// The error for a response that is not 2xx, with Google's own status and message.
fn failure(response: &Response, id: &str, range: &str) -> Error {
    let status = response.status;
    let detail = match serde_json::from_slice::<GoogleError>(&response.body) {
        Ok(GoogleError { error }) if !error.status.is_empty() => {
            format!("{} ({status} {})", error.message, error.status)
        }
        Ok(GoogleError { error }) if !error.message.is_empty() => {
            format!("{} ({status})", error.message)
        }
        _ => {
            let text: String = response.text().chars().take(200).collect();
            format!("{} (HTTP status {status})", text.trim())
        }
    };
    match status {
        400 => Error::permanent(format!(
            "Google Sheets refused the range `{range}` of spreadsheet `{id}` (is the tab name right, and the range in A1 notation?): {detail}"
        )),
        401 => Error::misconfigured(format!(
            "Google Sheets refused the credentials of secret `{SECRET}` (the host refreshes an OAuth token once before this is reported): {detail}"
        )),
        403 => Error::permanent(format!(
            "Google Sheets denied access to spreadsheet `{id}` (is it shared with the account of secret `{SECRET}`, and the Sheets API enabled?): {detail}"
        )),
        404 => Error::permanent(format!("spreadsheet `{id}` was not found: {detail}")),
        429 => Error::retryable(format!(
            "Google Sheets' read quota is used up for now (60 reads per minute per user): {detail}"
        )),
        408 | 500.. => Error::retryable(format!("Google Sheets did not answer: {detail}")),
        _ => Error::permanent(format!("Google Sheets refused the request: {detail}")),
    }
}

/// Percent-encodes a path segment: everything but ASCII letters, digits, `-`, `_` and `~` (a
/// `.` is encoded too, so a range can never be a dot segment).
fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_percent_encoded_as_one_segment() {
        assert_eq!(encode("'My Sheet'!A:E"), "%27My%20Sheet%27%21A%3AE");
        assert_eq!(encode("Orders!A1:E"), "Orders%21A1%3AE");
        assert_eq!(encode("../x"), "%2E%2E%2Fx");
        assert_eq!(encode("Café"), "Caf%C3%A9");
    }

    #[test]
    fn cells_and_absent_values_parse() {
        let sheet: ValueRange =
            serde_json::from_str(r#"{"range":"S!A1:C3","values":[["a",1,true],[],[null,"x"]]}"#)
                .unwrap();
        let rows: Vec<Vec<String>> = sheet.values.into_iter().map(|r| r.0).collect();
        assert_eq!(rows[0], ["a", "1", "TRUE"]);
        assert!(rows[1].is_empty());
        assert_eq!(rows[2], ["", "x"]);
        let empty: ValueRange =
            serde_json::from_str(r#"{"range":"S!A1:C3","majorDimension":"ROWS"}"#).unwrap();
        assert!(empty.values.is_empty());
    }

    #[test]
    fn errors_are_typed_by_status_with_google_s_message() {
        let response = |status, body: &str| Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let bad = r#"{"error":{"code":400,"message":"Unable to parse range: Nope!A:E","status":"INVALID_ARGUMENT"}}"#;
        let err = failure(&response(400, bad), "id1", "Nope!A:E");
        assert!(
            matches!(&err, Error::Permanent(m) if m.contains("`Nope!A:E`") && m.contains("Unable to parse range") && m.contains("INVALID_ARGUMENT")),
            "{err:?}"
        );
        assert!(matches!(
            failure(&response(401, "{}"), "i", "r"),
            Error::Misconfigured(_)
        ));
        assert!(matches!(
            failure(&response(403, "{}"), "i", "r"),
            Error::Permanent(_)
        ));
        assert!(matches!(
            failure(&response(404, "<html>"), "i", "r"),
            Error::Permanent(m) if m.contains("<html>")
        ));
        assert!(matches!(
            failure(&response(429, "{}"), "i", "r"),
            Error::Retryable(_)
        ));
        assert!(matches!(
            failure(&response(503, ""), "i", "r"),
            Error::Retryable(_)
        ));
        let refused = refused_grant(Error::retryable(
            "GET x: HTTP transport error: refreshing OAuth secret `google_sheets` failed: status 400 Bad Request, no access_token in the answer",
        ));
        assert!(matches!(refused, Error::Misconfigured(_)), "{refused:?}");
        let down = refused_grant(Error::retryable(
            "GET x: HTTP transport error: refreshing OAuth secret `google_sheets` failed: status 503 Service Unavailable, unreadable answer",
        ));
        assert!(down.is_retryable());
    }
}
