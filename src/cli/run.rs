//! `hull run`: create a container and start it, attached unless `-d`.

use super::create::{self, CreateArgs};
use super::lifecycle;

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    if !args.detach {
        super::terminal::block_signals();
    }
    let mut c = create::create(&args.create)?;
    if args.detach {
        let ready = lifecycle::spawn_monitor(&mut c, false)?;
        if let Some((code, error)) = lifecycle::wait_started(&mut c, ready)? {
            eprintln!("hull: {error}");
            return Ok(exit_byte(code));
        }
        println!("{}", c.id());
        return Ok(0);
    }
    let ready = lifecycle::spawn_monitor(&mut c, true)?;
    let stream = lifecycle::connect_attach(&mut c, ready)?;
    let code = lifecycle::attach_until_exit(&mut c, stream)?;
    Ok(exit_byte(code))
}

/// Exit codes above 255 cannot be returned; Docker clamps the same way.
pub fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}
