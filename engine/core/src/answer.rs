//! Checking a reply to an `ask` node against its validation, and normalising what is stored.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::compiled::Check;
use crate::conversation::UserMessage;

static THOUSANDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?\d{1,3}(,\d{3})+$").expect("valid regex"));

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$").expect("valid regex"));

/// The value to store for `message`, or `None` when it does not pass `check`.
pub(crate) fn check(check: &Check, message: &UserMessage) -> Option<Value> {
    match check {
        Check::Choice(choices) => return choice(choices, message),
        Check::Attachment(kinds) => return attachment(kinds, message),
        _ => {}
    }
    // A tap's payload is the answer, not its title; an attachment alone is no text (a sticker
    // or a like never answers a question).
    let text = message
        .payload
        .as_deref()
        .or(message.text.as_deref())?
        .trim();
    match check {
        Check::Text { min, max } => {
            let chars = text.chars().count();
            let ok = chars > 0 && min.is_none_or(|m| chars >= m) && max.is_none_or(|m| chars <= m);
            ok.then(|| Value::String(text.to_string()))
        }
        Check::Number { min, max, integer } => number(text, *min, *max, *integer),
        Check::Email => {
            (text.len() <= 254 && EMAIL.is_match(text)).then(|| Value::String(text.to_string()))
        }
        Check::Phone => phone(text).map(Value::String),
        Check::Regex(regex) => regex
            .is_match(text)
            .then(|| Value::String(text.to_string())),
        Check::Choice(_) | Check::Attachment(_) => None,
    }
}

/// The first attachment of one of `kinds`, as `{kind, url}` (stickers are never images).
fn attachment(kinds: &[&str], message: &UserMessage) -> Option<Value> {
    let found = message
        .attachments
        .iter()
        .find(|a| a.sticker_id.is_none() && kinds.contains(&a.kind.as_str()))?;
    let mut value = serde_json::Map::new();
    value.insert("kind".into(), Value::String(found.kind.clone()));
    if let Some(url) = &found.url {
        value.insert("url".into(), Value::String(url.clone()));
    }
    Some(Value::Object(value))
}

fn choice(choices: &[(String, String)], message: &UserMessage) -> Option<Value> {
    if let Some(payload) = &message.payload
        && let Some((_, value)) = choices.iter().find(|(_, value)| value == payload)
    {
        return Some(Value::String(value.clone()));
    }
    let text = message.text.as_deref()?.trim();
    let picked = choices
        .iter()
        .find(|(title, value)| title.eq_ignore_ascii_case(text) || value.eq_ignore_ascii_case(text))
        .or_else(|| {
            let n: usize = text.strip_suffix('.').unwrap_or(text).parse().ok()?;
            choices.get(n.checked_sub(1)?)
        });
    picked.map(|(_, value)| Value::String(value.clone()))
}

fn number(text: &str, min: Option<f64>, max: Option<f64>, integer: bool) -> Option<Value> {
    // Commas group thousands ("1,000", "1,000.5") or are a decimal comma ("1,5").
    let normalized = if text.contains('.') || THOUSANDS.is_match(text) {
        text.replace(',', "")
    } else {
        text.replace(',', ".")
    };
    let n: f64 = normalized.replace(' ', "").parse().ok()?;
    if !n.is_finite() || (integer && n.fract() != 0.0) {
        return None;
    }
    if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
        return None;
    }
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Value::from(n as i64));
    }
    serde_json::Number::from_f64(n).map(Value::Number)
}

fn phone(text: &str) -> Option<String> {
    let (plus, rest) = match text.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", text),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return None,
        }
    }
    (7..=15)
        .contains(&digits.len())
        .then(|| format!("{plus}{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(check_: &Check, t: &str) -> Option<Value> {
        check(check_, &UserMessage::text(t))
    }

    #[test]
    fn numbers_emails_phones() {
        let n = Check::Number {
            min: Some(1.0),
            max: Some(10.0),
            integer: false,
        };
        assert_eq!(text(&n, " 3 "), Some(Value::from(3)));
        assert_eq!(text(&n, "2,5"), Some(serde_json::json!(2.5)));
        let big = Check::Number {
            min: None,
            max: None,
            integer: true,
        };
        assert_eq!(text(&big, "1,000"), Some(Value::from(1000)));
        assert_eq!(text(&big, "12,345,678"), Some(Value::from(12_345_678)));
        assert_eq!(text(&n, "11"), None);
        assert_eq!(text(&n, "three"), None);
        assert_eq!(text(&n, "NaN"), None);
        assert_eq!(
            text(&Check::Email, "ada@example.com"),
            Some(Value::from("ada@example.com"))
        );
        assert_eq!(text(&Check::Email, "ada@example"), None);
        assert_eq!(
            text(&Check::Phone, "+33 6 12 34 56 78"),
            Some(Value::from("+33612345678"))
        );
        assert_eq!(text(&Check::Phone, "12345"), None);
        assert_eq!(text(&Check::Phone, "call me"), None);
    }

    #[test]
    fn choices_by_payload_title_or_number() {
        let c = Check::Choice(vec![
            ("Yes".into(), "YES".into()),
            ("No".into(), "NO".into()),
        ]);
        assert_eq!(
            check(&c, &UserMessage::payload("NO")),
            Some(Value::from("NO"))
        );
        assert_eq!(text(&c, "yes"), Some(Value::from("YES")));
        assert_eq!(text(&c, "2"), Some(Value::from("NO")));
        assert_eq!(text(&c, "3"), None);
        assert_eq!(text(&c, "maybe"), None);
    }
}
