//! A1 ranges applied to a local table (the CSV source), the way the Sheets API reads a grid:
//! `Orders!A:E` (columns A to E, every row), `Orders!A2:C10`, `Orders!3:8`, `A1:B` (no tab),
//! `'My Sheet'!B:B`, or a tab name alone (`Orders`: the whole table). The table stands for
//! whichever tab is named. Pure functions, no host calls.

/// The most columns a range may name (`ZZZ`).
const MAX_COLUMN: usize = 18_278;
/// The most rows a range may name.
const MAX_ROW: usize = 10_000_000;

/// A rectangle of the grid, 0-based and inclusive; an end of `None` runs to the table's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    first_column: usize,
    first_row: usize,
    last_column: Option<usize>,
    last_row: Option<usize>,
}

impl Rect {
    const ALL: Rect = Rect {
        first_column: 0,
        first_row: 0,
        last_column: None,
        last_row: None,
    };
}

/// `range` read from `table`: the range as answered (`Orders!A1:E7`, its open ends closed at
/// the table's last row and column) and its rows, each cut to the range's columns. `None` when
/// `range` is not an A1 range.
pub fn read(range: &str, table: &[Vec<String>]) -> Option<(String, Vec<Vec<String>>)> {
    let (tab, rect) = split(range.trim())?;
    let width = table.iter().map(Vec::len).max().unwrap_or(0);
    let last_column = rect
        .last_column
        .unwrap_or(width.saturating_sub(1).max(rect.first_column));
    let last_row = rect
        .last_row
        .unwrap_or(table.len().saturating_sub(1).max(rect.first_row));
    let rows = table
        .iter()
        .skip(rect.first_row)
        .take(last_row + 1 - rect.first_row)
        .map(|row| {
            row.iter()
                .skip(rect.first_column)
                .take(last_column + 1 - rect.first_column)
                .cloned()
                .collect()
        })
        .collect();
    let cells = format!(
        "{}{}:{}{}",
        letters(rect.first_column),
        rect.first_row + 1,
        letters(last_column),
        last_row + 1
    );
    let answered = match tab {
        Some(tab) => format!("{tab}!{cells}"),
        None => cells,
    };
    Some((answered, rows))
}

/// The tab (as written, quotes included) and the rectangle of `range`.
fn split(range: &str) -> Option<(Option<&str>, Rect)> {
    if range.is_empty() {
        return None;
    }
    // A quoted tab name may hold anything, `!` included; a quote in it is doubled.
    if let Some(rest) = range.strip_prefix('\'') {
        let mut end = None;
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|&(_, next)| next) == Some('\'') {
                    chars.next();
                } else {
                    end = Some(i);
                    break;
                }
            }
        }
        let end = end? + 1;
        let tab = &range[..=end];
        return match &range[end + 1..] {
            "" => Some((Some(tab), Rect::ALL)),
            cells => Some((Some(tab), rect(cells.strip_prefix('!')?)?)),
        };
    }
    if let Some((tab, cells)) = range.rsplit_once('!') {
        if tab.is_empty() {
            return None;
        }
        return Some((Some(tab), rect(cells)?));
    }
    // No `!`: cells of the first tab, else the name of a tab.
    match rect(range) {
        Some(rect) => Some((None, rect)),
        None => Some((Some(range), Rect::ALL)),
    }
}

/// `A1:E5`, `A:E`, `3:8`, `A2:C` or a single cell `B3`.
fn rect(cells: &str) -> Option<Rect> {
    let (start, end) = match cells.split_once(':') {
        Some((start, end)) => (cell(start)?, Some(cell(end)?)),
        None => (cell(cells)?, None),
    };
    let Some(end) = end else {
        // A single cell needs both a column and a row.
        let (Some(column), Some(row)) = start else {
            return None;
        };
        return Some(Rect {
            first_column: column,
            first_row: row,
            last_column: Some(column),
            last_row: Some(row),
        });
    };
    let (first_column, first_row, last_column, last_row) = match (start, end) {
        // A2:C10, A2:C (rows from 2 down)
        ((Some(c0), Some(r0)), (Some(c1), r1)) => (c0, r0, Some(c1), r1),
        // A:E, A:E10
        ((Some(c0), None), (Some(c1), r1)) => (c0, 0, Some(c1), r1),
        // 3:8
        ((None, Some(r0)), (None, Some(r1))) => (0, r0, None, Some(r1)),
        // A3:8 is not a range Google reads either.
        _ => return None,
    };
    if last_column.is_some_and(|c| c < first_column) || last_row.is_some_and(|r| r < first_row) {
        return None;
    }
    Some(Rect {
        first_column,
        first_row,
        last_column,
        last_row,
    })
}

/// A cell reference (`B3`, `B`, `3`, `$B$3`): its 0-based column and row, either optional.
fn cell(text: &str) -> Option<(Option<usize>, Option<usize>)> {
    let text = text.trim();
    let rest = text.strip_prefix('$').unwrap_or(text);
    let split = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let (column, row) = rest.split_at(split);
    let row = row.strip_prefix('$').unwrap_or(row);
    if column.is_empty() && row.is_empty() {
        return None;
    }
    let column = if column.is_empty() {
        None
    } else {
        let mut index = 0usize;
        for c in column.chars() {
            index = index * 26 + usize::from(c.to_ascii_uppercase() as u8 - b'A') + 1;
            if index > MAX_COLUMN {
                return None;
            }
        }
        Some(index - 1)
    };
    let row = if row.is_empty() {
        None
    } else {
        if !row.bytes().all(|b| b.is_ascii_digit()) || row.len() > 9 {
            return None;
        }
        let n: usize = row.parse().ok()?;
        if n == 0 || n > MAX_ROW {
            return None;
        }
        Some(n - 1)
    };
    Some((column, row))
}

/// The letters of a 0-based column: 0 is `A`, 26 is `AA`.
fn letters(column: usize) -> String {
    let mut n = column + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        out.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<Vec<String>> {
        [
            vec![
                "Order",
                "Status",
                "Ship Date",
                "Carrier",
                "Tracking URL",
                "Note",
            ],
            vec!["A-1001", "Shipped", "2025-12-30", "DHL"],
            vec![],
            vec!["A-1002", "Processing"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect()
    }

    #[test]
    fn columns_and_rows_are_cut_like_the_api() {
        let (answered, rows) = read("Orders!A:E", &table()).unwrap();
        assert_eq!(answered, "Orders!A1:E4");
        assert_eq!(rows[0].len(), 5);
        assert_eq!(rows[1], ["A-1001", "Shipped", "2025-12-30", "DHL"]);
        assert!(rows[2].is_empty());
        let (answered, rows) = read("Orders!B2:C", &table()).unwrap();
        assert_eq!(answered, "Orders!B2:C4");
        assert_eq!(
            rows,
            [vec!["Shipped", "2025-12-30"], vec![], vec!["Processing"]]
        );
        let (answered, rows) = read("Orders", &table()).unwrap();
        assert_eq!((answered.as_str(), rows.len()), ("Orders!A1:F4", 4));
        let (answered, rows) = read("A1:B2", &table()).unwrap();
        assert_eq!((answered.as_str(), rows.len()), ("A1:B2", 2));
        let (answered, rows) = read("'My Sheet'!2:3", &table()).unwrap();
        assert_eq!((answered.as_str(), rows.len()), ("'My Sheet'!A2:F3", 2));
        let (answered, rows) = read("'It''s!'!A1", &table()).unwrap();
        assert_eq!(
            (answered.as_str(), rows),
            ("'It''s!'!A1:A1", vec![vec!["Order".to_string()]])
        );
        let (answered, rows) = read("Orders!A1:Z1000", &table()).unwrap();
        assert_eq!((answered.as_str(), rows.len()), ("Orders!A1:Z1000", 4));
        let (_, rows) = read("Orders!$A$1:$B$2", &table()).unwrap();
        assert_eq!(rows[0], ["Order", "Status"]);
        // Past the table: nothing.
        let (answered, rows) = read("Orders!A10:E", &table()).unwrap();
        assert_eq!((answered.as_str(), rows.len()), ("Orders!A10:E10", 0));
    }

    #[test]
    fn what_is_not_a_range_is_refused() {
        for bad in [
            "",
            "!A1",
            "Orders!",
            "Orders!E:A",
            "Orders!A5:A1",
            "Orders!A3:8",
            "Orders!A0",
            "'Open!A1",
            "'Tab'A1",
            "Orders!1A",
        ] {
            assert!(read(bad, &table()).is_none(), "{bad}");
        }
    }

    #[test]
    fn column_letters_round_trip() {
        for (i, l) in [(0, "A"), (25, "Z"), (26, "AA"), (701, "ZZ"), (702, "AAA")] {
            assert_eq!(letters(i), l);
            assert_eq!(cell(l), Some((Some(i), None)));
        }
        assert_eq!(cell("b12"), Some((Some(1), Some(11))));
        assert!(cell("AAAA").is_none());
    }
}
