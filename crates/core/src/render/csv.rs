//! `--format csv`: RFC 4180 (via the csv crate), one row per path, every statistic of every
//! chosen metric. Text cells that a spreadsheet would run as a formula are defused.

use super::View;
use crate::attrpath::display_path;

pub fn render(view: &View) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string(), "kind".into(), "errors".into()];
    for m in view.metrics() {
        for stat in ["n", "min", "median", "mean", "p95", "max"] {
            header.push(format!("{}_{stat}", m.name));
        }
    }
    w.write_record(&header).expect("writing to memory");
    for row in &view.rows {
        let mut record = vec![defuse(&display_path(&row.path)), defuse(row.kind.name()), row.errors.to_string()];
        for s in &row.stats {
            record.extend([s.n.to_string(), s.min.to_string(), s.median.to_string(), format!("{:.1}", s.mean), s.p95.to_string(), s.max.to_string()]);
        }
        w.write_record(&record).expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("csv of UTF-8 is UTF-8")
}

/// A cell starting with = + - @ (or a tab or carriage return) is a formula to Excel, LibreOffice
/// and Google Sheets; a leading apostrophe makes it text (OWASP's advice).
pub fn defuse(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}
