//! `hull images` / `hull image ls`.

use std::io::Write;

use hull::image::reference::Reference;
use hull::image::store::{Image, ImageRecord};
use serde_json::json;

use super::format::{human_since, human_size, write_table};

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Output format: "table" or "json" (one JSON object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Show all images (accepted for compatibility; there are no intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only images of this repository, optionally with a tag
    repository: Option<String>,
}

/// One line of the listing.
struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    image: Image,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    if args.format != "table" && args.format != "json" {
        anyhow::bail!("unsupported --format {:?}: use \"table\" or \"json\"", args.format);
    }
    let filter = args.repository.as_deref().map(parse_filter).transpose()?;
    let store = super::open_store()?;
    let mut rows = Vec::new();
    for record in store.records()? {
        if filter.as_ref().is_some_and(|f| !f.matches(&record)) {
            continue;
        }
        let image = store.image(&record.manifest.digest)?;
        rows.push(row(&record, image, args.no_trunc));
    }
    rows.sort_by(|a, b| {
        b.image
            .created()
            .cmp(&a.image.created())
            .then(a.repository.cmp(&b.repository))
    });
    let mut out = std::io::stdout().lock();
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in rows.iter().filter(|r| seen.insert(r.id.clone())) {
            writeln!(out, "{}", r.id)?;
        }
    } else if args.format == "json" {
        for r in &rows {
            writeln!(out, "{}", json_row(r))?;
        }
    } else {
        write_table(&mut out, &table(&rows, args.digests))?;
    }
    Ok(())
}

fn row(record: &ImageRecord, image: Image, no_trunc: bool) -> Row {
    let reference = record.reference();
    let (repository, tag) = match &reference {
        Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_owned()),
        None => ("<none>".into(), "<none>".into()),
    };
    let digest = record.repo_digest.as_ref().map_or("<none>".into(), |d| d.to_string());
    let id = if no_trunc {
        image.config_digest.to_string()
    } else {
        image.config_digest.short().to_owned()
    };
    Row {
        repository,
        tag,
        digest,
        id,
        image,
    }
}

fn table(rows: &[Row], digests: bool) -> Vec<Vec<String>> {
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut table = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for r in rows {
        let mut line = vec![r.repository.clone(), r.tag.clone()];
        if digests {
            line.push(r.digest.clone());
        }
        line.extend([r.id.clone(), human_since(r.image.created()), human_size(r.image.size())]);
        table.push(line);
    }
    table
}

fn json_row(r: &Row) -> serde_json::Value {
    json!({
        "Containers": "N/A",
        "CreatedAt": r.image.created().map(|c| c.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
        "CreatedSince": human_since(r.image.created()),
        "Digest": r.digest,
        "ID": r.id,
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": human_size(r.image.size()),
        "Tag": r.tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(r.image.size()),
    })
}

/// `alpine` matches every tag of alpine; `alpine:3` only that tag.
struct Filter {
    name: String,
    tag: Option<String>,
}

fn parse_filter(s: &str) -> anyhow::Result<Filter> {
    let r = Reference::parse(s)?;
    let explicit_tag = s.rsplit('/').next().is_some_and(|last| last.contains(':'));
    Ok(Filter {
        name: r.name(),
        tag: if explicit_tag { r.tag().map(str::to_owned) } else { None },
    })
}

impl Filter {
    fn matches(&self, record: &ImageRecord) -> bool {
        let Some(r) = record.reference() else { return false };
        r.name() == self.name && self.tag.as_deref().is_none_or(|t| r.tag() == Some(t))
    }
}
