//! CSV exports: every report-like table (`format=csv` on the API,
//! `--format csv` on the CLI) is written by the `csv` crate, so a comma, a
//! quote or a line break inside a value (a sub-id, a User-Agent) stays in
//! its field (RFC 4180 quoting).

use serde_json::Value;

/// A header and its records as CSV, one record per line (`\n`).
pub fn csv<H, R, C>(header: H, records: impl IntoIterator<Item = R>) -> String
where
    H: IntoIterator,
    H::Item: AsRef<[u8]>,
    R: IntoIterator<Item = C>,
    C: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    // Writing into memory cannot fail; a record of the wrong length is a
    // bug that the tests catch (the writer refuses it).
    let _ = w.write_record(header);
    for r in records {
        let _ = w.write_record(r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A JSON value as one CSV field: null is empty, strings as they are, a
/// list joined with commas, anything else as its JSON text.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// JSON objects as CSV with the given columns (a missing key is empty).
pub fn objects<'a>(columns: &[&str], rows: impl IntoIterator<Item = &'a Value>) -> String {
    csv(columns, rows.into_iter().map(|r| columns.iter().map(|c| cell(&r[*c])).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_quotes_and_line_breaks_round_trip_through_a_csv_reader() {
        let nasty = ["a,b", "say \"hi\"", "line\nbreak", "cr\r\nlf", "", " padded "];
        let out = csv(["k", "v"], nasty.iter().map(|v| vec!["x", *v]));
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let back: Vec<String> = r.records().map(|rec| rec.unwrap()[1].to_string()).collect();
        assert_eq!(back, nasty);
    }

    #[test]
    fn json_cells_are_empty_for_null_and_joined_for_lists() {
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a,b");
        assert_eq!(cell(&serde_json::json!(0.25)), "0.25");
        assert_eq!(cell(&serde_json::json!(true)), "true");
    }
}
