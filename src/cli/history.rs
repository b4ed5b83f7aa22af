//! `hull image history`: the config's history, newest first, empty layers included.

use std::io::Write;

use serde_json::Value;

use super::format::{human_since, human_size, truncate, write_table};

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show times in a human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Image, by reference or id
    image: String,
}

struct Step {
    created: Option<chrono::DateTime<chrono::Utc>>,
    created_by: String,
    size: u64,
    comment: String,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<()> {
    super::check_image_query(&args.image)?;
    let store = super::open_store()?;
    let image = store.find(&args.image)?;
    let steps = steps(&image.config, image.manifest.layers.iter().map(|l| l.blob.size));
    let top_id = if args.no_trunc {
        image.config_digest.to_string()
    } else {
        image.config_digest.short().to_owned()
    };
    let id_of = |i: usize| if i == 0 { top_id.clone() } else { "<missing>".to_owned() };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for i in 0..steps.len() {
            writeln!(out, "{}", id_of(i))?;
        }
        return Ok(());
    }
    let mut rows = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
        .map(str::to_owned)
        .to_vec()];
    for (i, s) in steps.iter().enumerate() {
        let created = match (args.human, s.created) {
            (true, c) => human_since(c),
            (false, Some(c)) => c.to_rfc3339(),
            (false, None) => "N/A".into(),
        };
        let by = if args.no_trunc {
            s.created_by.clone()
        } else {
            truncate(&s.created_by, 45)
        };
        rows.push(vec![id_of(i), created, by, human_size(s.size), s.comment.clone()]);
    }
    write_table(&mut out, &rows)?;
    Ok(())
}

/// Pairs history entries with layer sizes (entries marked `empty_layer` have none),
/// newest first.
fn steps(config: &Value, mut layer_sizes: impl Iterator<Item = u64>) -> Vec<Step> {
    let history = config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = |h: &Value, k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut steps: Vec<Step> = history
        .iter()
        .map(|h| {
            let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
            Step {
                created: h.get("created").and_then(Value::as_str).and_then(|c| c.parse().ok()),
                created_by: text(h, "created_by"),
                size: if empty { 0 } else { layer_sizes.next().unwrap_or(0) },
                comment: text(h, "comment"),
            }
        })
        .collect();
    steps.reverse();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_layers_take_no_layer_size() {
        let config = serde_json::json!({"history": [
            {"created_by": "ADD file", "created": "2024-01-01T00:00:00Z"},
            {"created_by": "CMD [\"sh\"]", "empty_layer": true},
            {"created_by": "RUN x"},
        ]});
        let s = steps(&config, [10u64, 20].into_iter());
        assert_eq!(s.iter().map(|s| s.size).collect::<Vec<_>>(), vec![20, 0, 10]);
        assert_eq!(s[2].created_by, "ADD file");
    }
}
