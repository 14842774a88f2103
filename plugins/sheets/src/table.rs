//! The sheet as a table: the first row of the range names the columns, the other rows are
//! records. Pure functions, no host calls.

use std::collections::BTreeMap;

/// How many header names an error message lists at most.
const LISTED_HEADERS: usize = 40;

/// The column called `name`: the first header equal to it, else the first equal to it ignoring
/// case and surrounding spaces.
pub fn column(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name).or_else(|| {
        let wanted = name.trim().to_lowercase();
        headers
            .iter()
            .position(|h| h.trim().to_lowercase() == wanted)
    })
}

/// The headers, for an error message: `` `Order`, `Status` `` (empty ones left out).
pub fn list(headers: &[String]) -> String {
    let named: Vec<&String> = headers.iter().filter(|h| !h.trim().is_empty()).collect();
    if named.is_empty() {
        return "(none: the first row of the range is empty)".to_string();
    }
    let mut out = named
        .iter()
        .take(LISTED_HEADERS)
        .map(|h| format!("`{h}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if named.len() > LISTED_HEADERS {
        out.push_str(&format!(" and {} more", named.len() - LISTED_HEADERS));
    }
    out
}

/// Whether `cell` holds `value`: the same text, or the same text ignoring case.
pub fn matches(cell: &str, value: &str, case_insensitive: bool) -> bool {
    if case_insensitive {
        cell == value || cell.to_lowercase() == value.to_lowercase()
    } else {
        cell == value
    }
}

/// `row` as named fields: every header with a name gets a field, an empty string where the row
/// is shorter (the API drops trailing empty cells). Columns without a header and cells beyond
/// the header row are left out; of two columns with the same header, the first is kept.
pub fn record(headers: &[String], row: &[String]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for (i, header) in headers.iter().enumerate() {
        if header.trim().is_empty() || fields.contains_key(header) {
            continue;
        }
        fields.insert(header.clone(), row.get(i).cloned().unwrap_or_default());
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_found_by_exact_header_then_ignoring_case() {
        let headers = strings(&["Order", "Status", " ship date ", "status"]);
        assert_eq!(column(&headers, "Status"), Some(1));
        assert_eq!(column(&headers, "status"), Some(3));
        assert_eq!(column(&headers, "Ship Date"), Some(2));
        assert_eq!(column(&headers, "ORDER"), Some(0));
        assert_eq!(column(&headers, "Carrier"), None);
    }

    #[test]
    fn ragged_rows_get_empty_fields_and_unnamed_columns_are_left_out() {
        let headers = strings(&["Order", "", "Status", "Order", "Carrier"]);
        let row = strings(&["A-1", "note", "Shipped"]);
        let fields = record(&headers, &row);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields["Order"], "A-1");
        assert_eq!(fields["Status"], "Shipped");
        assert_eq!(fields["Carrier"], "");
        let long = strings(&["A-2", "", "Paid", "dup", "DHL", "extra"]);
        assert_eq!(record(&headers, &long)["Order"], "A-2");
    }

    #[test]
    fn matching_is_exact_or_ignores_case() {
        assert!(matches("A-1001", "A-1001", false));
        assert!(!matches("a-1001", "A-1001", false));
        assert!(!matches("A-1001 ", "A-1001", false));
        assert!(matches("a-1001", "A-1001", true));
        assert!(matches("ÉCOLE", "école", true));
    }

    #[test]
    fn header_lists_are_bounded() {
        assert_eq!(list(&strings(&["A", "", "B"])), "`A`, `B`");
        assert!(list(&strings(&["", " "])).starts_with("(none"));
        let many: Vec<String> = (0..50).map(|i| format!("h{i}")).collect();
        assert!(list(&many).ends_with("and 10 more"));
    }
}
