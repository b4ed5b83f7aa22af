//! `hull ps`: list containers.

use std::io::Write;

use chrono::Utc;
use hull::container::list::ListFilter;
use hull::container::{Container, Status};

use super::format::{human_since, render_template, truncate, write_table};
use super::lifecycle;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// "table", "json", or a Go-style template such as '{{.ID}} {{.Names}}'
    #[arg(long, default_value = "table")]
    format: String,
    /// Filter output based on conditions provided (id=, name=, label=KEY[=VALUE],
    /// label!=KEY[=VALUE])
    #[arg(short, long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
}

pub fn run(args: PsArgs) -> anyhow::Result<u8> {
    let filter = ListFilter::parse(&args.filter)?;
    let all = lifecycle::containers()?.list()?;
    let mut shown: Vec<&Container> = all
        .iter()
        .filter(|c| (args.all || c.state.is_running()) && filter.matches(c))
        .collect();
    shown.reverse(); // newest first, as Docker lists them
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for c in shown {
            writeln!(out, "{}", if args.no_trunc { c.id() } else { &c.id()[..12] })?;
        }
        return Ok(0);
    }
    let fields: Vec<Vec<(&str, String)>> = shown.iter().map(|c| fields(c, args.no_trunc)).collect();
    match args.format.as_str() {
        "table" => {
            let mut rows = vec![[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ]
            .map(String::from)
            .to_vec()];
            for f in &fields {
                rows.push(
                    ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
                        .iter()
                        .map(|k| {
                            f.iter()
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        })
                        .collect(),
                );
            }
            write_table(&mut out, &rows)?;
        }
        "json" => {
            for f in &fields {
                let map: serde_json::Map<String, serde_json::Value> =
                    f.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect();
                writeln!(out, "{}", serde_json::Value::Object(map))?;
            }
        }
        template => {
            for f in &fields {
                writeln!(out, "{}", render_template(template, f)?)?;
            }
        }
    }
    Ok(0)
}

fn fields(c: &Container, no_trunc: bool) -> Vec<(&'static str, String)> {
    let command = shell_quote(&c.config.process.args);
    let command = if no_trunc { command } else { truncate(&command, 20) };
    vec![
        (
            "ID",
            if no_trunc {
                c.id().to_owned()
            } else {
                c.id()[..12].to_owned()
            },
        ),
        ("Image", c.config.image.clone()),
        ("Command", format!("\"{command}\"")),
        (
            "CreatedAt",
            c.config.created.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        ),
        ("RunningFor", human_since(Some(c.config.created))),
        ("Status", status_text(c)),
        ("State", state_word(c).into()),
        (
            "Ports",
            c.config
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Names", c.config.name.clone()),
        (
            "Labels",
            c.config
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
}

fn state_word(c: &Container) -> &'static str {
    match c.state.status {
        Status::Running => "running",
        Status::Created if c.state.monitor.is_some() => "running",
        Status::Created => "created",
        Status::Exited => "exited",
    }
}

/// `Up 5 seconds`, `Exited (0) 2 minutes ago`, `Created`.
pub fn status_text(c: &Container) -> String {
    let since = |t: Option<chrono::DateTime<Utc>>| human_since(t);
    match c.state.status {
        Status::Running => format!("Up {}", since(c.state.started_at).trim_end_matches(" ago")),
        Status::Created if c.state.monitor.is_some() => "Starting".into(),
        Status::Created => "Created".into(),
        Status::Exited => format!(
            "Exited ({}) {}",
            c.state.exit_code.unwrap_or(0),
            since(c.state.finished_at)
        ),
    }
}

fn shell_quote(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
