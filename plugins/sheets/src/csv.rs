//! CSV text as rows of cells (RFC 4180): fields separated by commas, records by CRLF or LF;
//! a field in double quotes may hold commas, line breaks and doubled quotes (`""`). A UTF-8 byte
//! order mark is skipped; a final line break ends the last record (it does not start an empty
//! one). Pure functions, no host calls.

/// The rows of `text`, or why it is not CSV (with the line).
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    #[derive(PartialEq)]
    enum State {
        /// At the start of a field.
        Start,
        /// In a field without quotes.
        Unquoted,
        /// In a quoted field.
        Quoted,
        /// Just after a quote in a quoted field: a doubled quote or the field's end.
        AfterQuote,
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut state = State::Start;
    let (mut line, mut opened) = (1usize, 1usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (&state, c) {
            (State::Start, '"') => {
                state = State::Quoted;
                opened = line;
            }
            (State::Quoted, '"') => state = State::AfterQuote,
            (State::Quoted, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (State::AfterQuote, '"') => {
                field.push('"');
                state = State::Quoted;
            }
            (_, ',') => {
                row.push(std::mem::take(&mut field));
                state = State::Start;
            }
            (_, '\r' | '\n') => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                state = State::Start;
                line += 1;
            }
            (State::AfterQuote, other) => {
                return Err(format!(
                    "line {line}: `{other}` after a closing quote (a quote inside a quoted field is written `\"\"`)"
                ));
            }
            (State::Start | State::Unquoted, c) => {
                // A quote inside a field without quotes is kept as it is.
                field.push(c);
                state = State::Unquoted;
            }
        }
    }
    match state {
        State::Quoted => {
            return Err(format!(
                "line {opened}: a quoted field is not closed (a `\"` is missing)"
            ));
        }
        // Nothing since the last line break: no record.
        State::Start if row.is_empty() => {}
        _ => {
            row.push(field);
            rows.push(row);
        }
    }
    // An empty line is a record of one empty field: a row without cells, as the API sends it.
    for row in &mut rows {
        if row.len() == 1 && row[0].is_empty() {
            row.clear();
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Vec<String>> {
        parse(text).unwrap()
    }

    #[test]
    fn plain_records_with_either_line_ending() {
        assert_eq!(rows("a,b\n1,2\n"), [["a", "b"], ["1", "2"]]);
        assert_eq!(rows("a,b\r\n1,2"), [["a", "b"], ["1", "2"]]);
        assert_eq!(rows("\u{feff}a,b\r\n1,2\r\n"), [["a", "b"], ["1", "2"]]);
        assert_eq!(rows("a,,c\n,,\n"), [["a", "", "c"], ["", "", ""]]);
        assert_eq!(rows("a,b,\n"), [vec!["a", "b", ""]]);
        assert_eq!(rows("a,b,"), [vec!["a", "b", ""]]);
        assert!(rows("").is_empty());
    }

    #[test]
    fn empty_lines_are_rows_without_cells() {
        let parsed = rows("a\n\nb\n");
        assert_eq!(parsed.len(), 3);
        assert!(parsed[1].is_empty());
    }

    #[test]
    fn quoted_fields_hold_commas_line_breaks_and_quotes() {
        assert_eq!(
            rows("\"Name\",\"Note\"\n\"Ada, Countess\",\"said \"\"hi\"\"\nthen left\"\n"),
            [
                vec!["Name", "Note"],
                vec!["Ada, Countess", "said \"hi\"\nthen left"]
            ]
        );
        assert_eq!(rows("\"\",x\n"), [vec!["", "x"]]);
        assert_eq!(rows("x,\"\"\n"), [vec!["x", ""]]);
        assert_eq!(rows("x,\"a\","), [vec!["x", "a", ""]]);
        assert_eq!(rows("\"a\"\r\n\"b\""), [vec!["a"], vec!["b"]]);
        // A quote inside an unquoted field is kept as it is.
        assert_eq!(rows("5\" disk,x\n"), [vec!["5\" disk", "x"]]);
    }

    #[test]
    fn malformed_quoting_is_refused_with_the_line() {
        let err = parse("a,b\n\"open,x\n").unwrap_err();
        assert!(
            err.starts_with("line 2:") && err.contains("not closed"),
            "{err}"
        );
        let err = parse("a\n\"x\"y,z\n").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("`y`"), "{err}");
    }
}
