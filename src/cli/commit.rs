//! `hull commit [-a AUTHOR] [-c CHANGE]... [-m MESSAGE] CONTAINER [REPOSITORY[:TAG]]`:
//! the container's writable layer becomes a real OCI layer (whiteouts and opaque
//! directories in OCI form) on top of its image, with the container's config and a
//! history entry. Prints the new image id.

use anyhow::Context;
use guest_agent::protocol::CopyOp;
use hull::image::build::{self, HistoryEntry};
use hull::image::manifest::Layer;
use serde_json::{json, Value};

use super::{files, lifecycle};

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long, default_value = "")]
    author: String,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long, default_value = "")]
    message: String,
    /// Pause container during commit (a running container is not paused; its
    /// writable layer is read as it is)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG] of the new image (untagged when left out)
    repository: Option<String>,
}

pub fn run(args: CommitArgs) -> anyhow::Result<()> {
    let reference = args.repository.as_deref().map(super::tag_target).transpose()?;
    let store = super::open_store()?;
    let c = lifecycle::containers()?.find(&args.container)?;
    let base = store
        .find(&c.config.image_id)
        .with_context(|| format!("the image of container {} ({})", c.config.name, c.config.image))?;
    let mut config = base.config.clone();
    container_config(&mut config, &base.config, &c.config.process);
    // Checked before the layer is read: a bad change costs nothing.
    build::apply_changes(&mut config, &args.change)?;
    let _pin = store.pin()?;
    // Published only once the agent reported the whole layer sent: a failed or cut
    // stream leaves nothing but a temporary file, removed on the way out.
    let writer = files::read_from(&c, CopyOp::Layer, |tar| {
        let mut writer = store.blob_writer()?;
        std::io::copy(tar, &mut writer).context("writing the layer into the store")?;
        Ok(writer)
    })?;
    let layer: Layer = build::publish_layer(writer).context("writing the layer into the store")?;
    let created_by = c.config.process.args.join(" ");
    let history = HistoryEntry {
        created_by: &created_by,
        comment: &args.message,
        author: &args.author,
    };
    build::add_layer(&mut config, &layer.blob.digest, &history)?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert("container".into(), json!(c.config.id));
    }
    let mut layers = base.manifest.layers.clone();
    layers.push(layer);
    let id = build::write_image(&store, &config, layers, reference.as_ref())?;
    println!("{id}");
    Ok(())
}

/// The container's process settings become the new image's, as in Docker: its
/// environment, working directory, user, and its command (split back into the
/// image's entrypoint and a new `Cmd` when it still starts with that entrypoint).
fn container_config(config: &mut Value, base: &Value, process: &guest_agent::protocol::ProcessSpec) {
    let Some(root) = config.as_object_mut() else { return };
    let inner = root.entry("config").or_insert_with(|| json!({}));
    if !inner.is_object() {
        *inner = json!({});
    }
    let inner = inner.as_object_mut().expect("made an object above");
    let entrypoint: Vec<String> = base
        .pointer("/config/Entrypoint")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let args = &process.args;
    if !entrypoint.is_empty() && args.starts_with(&entrypoint) {
        inner.insert("Cmd".into(), json!(args[entrypoint.len()..]));
    } else if entrypoint.is_empty() {
        inner.insert("Cmd".into(), json!(args));
    } else {
        inner.insert("Entrypoint".into(), json!(args[..1.min(args.len())]));
        inner.insert("Cmd".into(), json!(args[1.min(args.len())..]));
    }
    inner.insert("Env".into(), json!(process.env));
    inner.insert("WorkingDir".into(), json!(process.cwd));
    inner.insert("User".into(), json!(process.user));
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_agent::protocol::ProcessSpec;

    fn spec(args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cwd: "/w".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_container_command_splits_back_into_entrypoint_and_cmd() {
        let base = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["x"]}});
        let mut c = base.clone();
        container_config(&mut c, &base, &spec(&["/ep", "run", "fast"]));
        assert_eq!(c["config"]["Entrypoint"], json!(["/ep"]));
        assert_eq!(c["config"]["Cmd"], json!(["run", "fast"]));
        assert_eq!(c["config"]["Env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(c["config"]["WorkingDir"], "/w");
        // `--entrypoint` replaced it.
        let mut c = base.clone();
        container_config(&mut c, &base, &spec(&["sh", "-c", "true"]));
        assert_eq!(c["config"]["Entrypoint"], json!(["sh"]));
        assert_eq!(c["config"]["Cmd"], json!(["-c", "true"]));
        // No entrypoint: the whole command is the Cmd.
        let base = json!({"config": {"Cmd": ["sh"]}});
        let mut c = base.clone();
        container_config(&mut c, &base, &spec(&["echo", "hi"]));
        assert_eq!(c["config"]["Cmd"], json!(["echo", "hi"]));
    }
}
