//! How results are printed: aligned tables for people, the API's JSON for scripts.
//!
//! The table code is hand-written: it is a dozen lines of padding, smaller than any table
//! crate's API surface, and keeps the output stable for tests.

use serde::Serialize;

use crate::models::{Asset, Location, Operation};
use crate::safe_text;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns of the useful fields.
    #[default]
    Table,
    /// The API's JSON objects (one array for a list).
    Json,
}

/// Columns padded to their widest cell, separated by two spaces; the last column is not
/// padded, so lines carry no trailing blanks.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| safe_text::value(cell).into_owned())
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines, keys aligned, for one object.
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(key, value)| {
            let value = safe_text::value(value);
            let line = format!("{key:<width$}  {value}");
            format!("{}\n", line.trim_end())
        })
        .collect()
}

pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising our own models cannot fail (no maps with non-string keys).
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn count_cell(op: &Operation) -> String {
    match op.devices_total() {
        Some(total) => format!("{}/{}", op.number_assets_imported(), total),
        None => op.number_assets_imported().to_string(),
    }
}

/// Location, or the error message of a failed import.
fn note_cell(op: &Operation) -> String {
    match op.error_message() {
        Some(message) => format!("error: {message}"),
        None => op.location().unwrap_or("").to_owned(),
    }
}

pub fn imports_table(operations: &[Operation]) -> String {
    let rows: Vec<Vec<String>> = operations
        .iter()
        .map(|op| {
            vec![
                op.identity.clone(),
                op.state().label().to_owned(),
                count_cell(op),
                op.timestamp_accepted.clone().unwrap_or_default(),
                op.timestamp_finished.clone().unwrap_or_default(),
                op.display_name().to_owned(),
                note_cell(op),
            ]
        })
        .collect();
    render_table(
        &[
            "IDENTITY",
            "STATUS",
            "ASSETS",
            "ACCEPTED",
            "FINISHED",
            "DISPLAY NAME",
            "LOCATION / ERROR",
        ],
        &rows,
    )
}

pub fn import_fields(op: &Operation) -> String {
    let mut fields = vec![
        ("identity:", op.identity.clone()),
        ("display name:", op.display_name().to_owned()),
        ("status:", op.state().label().to_owned()),
        ("done:", op.done.to_string()),
        ("assets imported:", count_cell(op)),
        (
            "accepted:",
            op.timestamp_accepted.clone().unwrap_or_default(),
        ),
        (
            "finished:",
            op.timestamp_finished.clone().unwrap_or_default(),
        ),
        ("location:", op.location().unwrap_or("").to_owned()),
    ];
    if let Some(refused) = op.devices_refused().filter(|n| *n > 0) {
        fields.push(("devices refused:", refused.to_string()));
    }
    if let Some(message) = op.error_message() {
        fields.push(("error:", message.to_owned()));
    }
    render_fields(&fields)
}

fn coordinate(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

pub fn locations_table(locations: &[Location]) -> String {
    let rows: Vec<Vec<String>> = locations
        .iter()
        .map(|l| {
            vec![
                l.identity.clone(),
                l.display_name.clone(),
                coordinate(l.latitude),
                coordinate(l.longitude),
                l.description.clone(),
            ]
        })
        .collect();
    render_table(
        &[
            "IDENTITY",
            "DISPLAY NAME",
            "LATITUDE",
            "LONGITUDE",
            "DESCRIPTION",
        ],
        &rows,
    )
}

pub fn location_fields(l: &Location) -> String {
    let attributes = l
        .attributes
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => format!("{k}={s}"),
            None => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    render_fields(&[
        ("identity:", l.identity.clone()),
        ("display name:", l.display_name.clone()),
        ("description:", l.description.clone()),
        ("latitude:", coordinate(l.latitude)),
        ("longitude:", coordinate(l.longitude)),
        ("attributes:", attributes),
    ])
}

pub fn assets_table(assets: &[Asset]) -> String {
    let rows: Vec<Vec<String>> = assets
        .iter()
        .map(|a| {
            vec![
                a.identity.clone(),
                a.attribute("arc_display_name").to_owned(),
                a.attribute("arc_display_type").to_owned(),
                a.attribute("arc_home_location_identity").to_owned(),
                a.at_time.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render_table(&["IDENTITY", "NAME", "TYPE", "LOCATION", "AT TIME"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_text_cannot_fake_rows_or_drive_the_terminal() {
        let table = render_table(
            &["ID", "NOTE"],
            &[vec![
                "dev\n1  forged-row".to_owned(),
                "\u{1b}]0;title\u{7}\u{202e}gnp.exe".to_owned(),
            ]],
        );
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(!table.contains('\u{202e}'));
        assert!(table.contains("dev\\u000a1"), "{table}");
        let fields = render_fields(&[("error:", "bad\r\u{1b}[2Kgood".to_owned())]);
        assert_eq!(fields, "error:  bad\\u000d\\u001b[2Kgood\n");
    }

    #[test]
    fn columns_are_aligned_without_trailing_blanks() {
        let table = render_table(
            &["A", "LONG HEADER", "C"],
            &[
                vec!["wide cell".into(), "x".into(), "".into()],
                vec!["y".into(), "z".into(), "last".into()],
            ],
        );
        assert_eq!(
            table,
            "A          LONG HEADER  C\n\
             wide cell  x\n\
             y          z            last\n"
        );
    }

    #[test]
    fn import_rows_show_state_count_and_error() {
        let ops: Vec<Operation> = serde_json::from_str(
            r#"[
              {"identity":"iothubgdr/1","done":true,"timestamp_accepted":"2026-01-01T00:00:00Z",
               "timestamp_finished":"2026-01-01T00:00:05Z","number_devices_total":3,
               "result":{"display_name":"hub a","number_assets_imported":3,"status":"STATUS_FINISHED",
                         "arc_home_location_identity":"locations/9"}},
              {"identity":"iothubgdr/2","done":true,"timestamp_accepted":"2026-01-01T00:00:00Z",
               "timestamp_finished":"2026-01-01T00:00:01Z",
               "error":{"display_name":"hub b","number_assets_imported":0,"error_message":"invalid secret provided"}}
            ]"#,
        )
        .unwrap();
        let table = imports_table(&ops);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("IDENTITY     STATUS"));
        assert!(lines[1].contains("FINISHED"));
        assert!(lines[1].contains("3/3"));
        assert!(lines[1].ends_with("locations/9"));
        assert!(lines[2].contains("ERROR"));
        assert!(lines[2].ends_with("error: invalid secret provided"));
        let status_col = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("FINISHED"), Some(status_col));
        assert_eq!(lines[2].find("ERROR"), Some(status_col));
    }

    #[test]
    fn single_import_fields_are_aligned() {
        let op: Operation = serde_json::from_str(
            r#"{"identity":"iothubgdr/1","done":false,"result":{"display_name":"d","number_assets_imported":5,"status":"STATUS_INPROGRESS"}}"#,
        )
        .unwrap();
        let text = import_fields(&op);
        assert!(text.contains("identity:         iothubgdr/1\n"), "{text}");
        assert!(text.contains("status:           INPROGRESS\n"), "{text}");
        assert!(text.contains("assets imported:  5\n"), "{text}");
        assert!(!text.contains("error:"));
    }

    #[test]
    fn asset_and_location_tables_pick_the_useful_fields() {
        let assets: Vec<Asset> = serde_json::from_str(
            r#"[{"identity":"assets/1","behaviours":["RecordEvidence"],"attributes":
                {"arc_display_name":"device-1","arc_display_type":"IoT Edge device","arc_home_location_identity":"locations/9"},
                "at_time":"2026-01-01T00:00:00Z"}]"#,
        )
        .unwrap();
        let table = assets_table(&assets);
        assert!(table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("assets/1  device-1  IoT Edge device  locations/9"));

        let locations: Vec<Location> = serde_json::from_str(
            r#"[{"identity":"locations/9","display_name":"Plant","description":"north","latitude":52.5,"longitude":-1.25,"attributes":{"site":"n1"}}]"#,
        )
        .unwrap();
        let table = locations_table(&locations);
        assert!(
            table.contains("locations/9  Plant         52.5      -1.25      north"),
            "{table}"
        );
        assert!(location_fields(&locations[0]).contains("site=n1"));
    }
}
