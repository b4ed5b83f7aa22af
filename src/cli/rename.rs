//! `hull rename`: give a container a new name.

#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The container, by id, id prefix or name
    container: String,
    /// Its new name
    new_name: String,
}

/// Prints nothing on success, as Docker does.
pub fn run(args: RenameArgs) -> anyhow::Result<()> {
    super::lifecycle::containers()?.rename(&args.container, &args.new_name)?;
    Ok(())
}
