//! `hull logs`: what a container's main process wrote, stdout and stderr kept apart.

use std::io::Write;
use std::time::Duration;

use hull::container::logs::{self, Follower, Line, LogStream, Record};

use super::lifecycle;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

pub fn run(args: LogsArgs) -> anyhow::Result<u8> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse().map_err(|_| anyhow::anyhow!("invalid --tail value {n:?}"))?),
    };
    let store = lifecycle::containers()?;
    let mut c = store.find(&args.container)?;
    let path = c.log_path();
    // Start following before reading, so nothing written in between is lost.
    let mut follower = Follower::at_end(&path)?;
    let records = logs::read_all(&path)?;
    let lines = logs::lines(&records);
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[skip..] {
        emit(line, args.timestamps)?;
    }
    if !args.follow {
        return Ok(0);
    }
    loop {
        let running = c.reload().is_ok() && c.settle().is_ok() && c.state.is_running();
        let new: Vec<Record> = follower.poll()?;
        for line in logs::lines(&new) {
            emit(&line, args.timestamps)?;
        }
        if !running {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn emit(line: &Line, timestamps: bool) -> std::io::Result<()> {
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        if timestamps {
            write!(out, "{} ", line.time.format("%Y-%m-%dT%H:%M:%S%.9fZ"))?;
        }
        out.write_all(&line.data)?;
        out.flush()
    };
    match line.stream {
        LogStream::Stdout => write(&mut std::io::stdout().lock()),
        LogStream::Stderr => write(&mut std::io::stderr().lock()),
    }
}
