//! Docker-style output helpers: human sizes and ages, aligned tables.

use std::io::{self, Write};

use chrono::{DateTime, Utc};

/// Sizes as Docker prints them: three significant digits, decimal units (`7.38MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", three_significant(value), UNITS[unit])
}

/// Sizes in binary units, as Docker's `info` prints memory: four significant digits
/// (`1GiB`, `1.937GiB`).
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value >= 1000.0 {
        0
    } else if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{value:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", UNITS[unit])
}

fn three_significant(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Ages as Docker prints them: `2 weeks ago`, `About an hour ago`.
pub fn human_since(when: Option<DateTime<Utc>>) -> String {
    let Some(when) = when else { return "N/A".into() };
    let secs = (Utc::now() - when).num_seconds().max(0);
    format!("{} ago", human_duration(secs))
}

fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{d} days"),
        _ if h < 24 * 30 * 2 => format!("{} weeks", d / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    }
}

/// Writes rows as columns separated by at least three spaces, like Docker's tables.
pub fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Cuts `s` to `max` characters, ending with `…` when cut (as Docker does).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Renders a Go-style template of `{{.Field}}` placeholders (what `--format` takes
/// in most scripts); `\t` and `\n` escapes are honoured. A `table ` prefix is dropped.
pub fn render_template(template: &str, fields: &[(&str, String)]) -> anyhow::Result<String> {
    let template = template.strip_prefix("table ").unwrap_or(template);
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template: unclosed action in {template:?}"))?;
        let action = rest[start + 2..start + end].trim();
        let name = action
            .strip_prefix('.')
            .ok_or_else(|| anyhow::anyhow!("template: unsupported action {{{{{action}}}}}"))?;
        let value = fields
            .iter()
            .find(|(k, _)| *k == name)
            .ok_or_else(|| anyhow::anyhow!("template: can't evaluate field {name}"))?;
        out.push_str(&value.1);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_docker() {
        assert_eq!(human_size(7_380_000), "7.38MB");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(123_400_000), "123MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn binary_sizes_match_dockers_info() {
        assert_eq!(binary_size(1 << 30), "1GiB");
        assert_eq!(binary_size(2_080_000_000), "1.937GiB");
        assert_eq!(binary_size(512), "512B");
        assert_eq!(binary_size(1536 << 20), "1.5GiB");
        assert_eq!(binary_size(1000 << 20), "1000MiB");
    }

    #[test]
    fn durations_match_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn templates_render_fields() {
        let f = [("ID", "abc".to_string()), ("Names", "web".to_string())];
        assert_eq!(render_template("{{.ID}}\\t{{ .Names }}", &f).unwrap(), "abc\tweb");
        assert_eq!(render_template("table {{.Names}}", &f).unwrap(), "web");
        assert!(render_template("{{.Nope}}", &f).is_err());
        assert!(render_template("{{json .}}", &f).is_err());
        assert!(render_template("{{.ID", &f).is_err());
    }

    #[test]
    fn table_pads_columns() {
        let mut out = Vec::new();
        let rows = vec![vec!["A".into(), "BB".into()], vec!["long".into(), "x".into()]];
        write_table(&mut out, &rows).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A      BB\nlong   x\n");
    }
}
