//! `hull image inspect`.

use std::io::Write;

use hull::image::store::Image;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Images, by reference or id
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    for query in &args.images {
        super::check_image_query(query)?;
    }
    let store = super::open_store()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for query in &args.images {
        match store.find(query) {
            Ok(image) => found.push(describe(&image)),
            Err(hull::image::store::StoreError::NoSuchImage(q)) => missing.push(q),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", pretty(&Value::Array(found))?)?;
    if !missing.is_empty() {
        anyhow::bail!("No such image: {}", missing.join(", "));
    }
    Ok(())
}

/// The inspect document, with Docker's field names.
pub fn describe(image: &Image) -> Value {
    let c = &image.config;
    let field = |name: &str| c.get(name).cloned().unwrap_or(Value::String(String::new()));
    let mut doc = json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": image.tags.iter().filter(|t| t.tag().is_some()).map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": image.repo_digests,
        "Parent": "",
        "Comment": field("comment"),
        "Created": field("created"),
        "Author": field("author"),
        "Config": c.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": field("architecture"),
        "Os": field("os"),
        "Size": image.size(),
        "RootFS": {"Type": "layers", "Layers": image.diff_ids()},
        "Descriptor": {
            "mediaType": image.manifest.media_type,
            "digest": image.manifest_digest.to_string(),
        },
    });
    if let Some(variant) = c.get("variant") {
        doc["Variant"] = variant.clone();
    }
    doc
}

/// One image's inspect document, for `hull inspect`.
pub fn describe_image(query: &str) -> anyhow::Result<Value> {
    super::check_image_query(query)?;
    Ok(describe(&super::open_store()?.find(query)?))
}

/// JSON indented with four spaces, as Docker prints it.
pub fn pretty(v: &Value) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)?)
}
