//! `hull logs`: what a container's main process wrote, stdout and stderr kept apart.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hull::container::logs::{self, Follower, Line, LogStream, Record};
use hull::container::prune::timestamp;

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
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    until: Option<String>,
    container: String,
}

/// The lines of a log to show: those written from `since` to `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Window {
    fn parse(since: Option<&str>, until: Option<&str>, now: DateTime<Utc>) -> anyhow::Result<Window> {
        let at = |flag: &str, value: Option<&str>| -> anyhow::Result<Option<DateTime<Utc>>> {
            value
                .map(|v| {
                    timestamp(v, now).ok_or_else(|| {
                        anyhow::anyhow!("invalid value for --{flag}: {v:?} is neither a time nor a duration")
                    })
                })
                .transpose()
        };
        Ok(Window {
            since: at("since", since)?,
            until: at("until", until)?,
        })
    }

    fn contains(&self, line: &Line) -> bool {
        self.since.is_none_or(|t| line.time >= t) && self.until.is_none_or(|t| line.time <= t)
    }

    /// Whether nothing written from now on can be shown.
    fn closed(&self, now: DateTime<Utc>) -> bool {
        self.until.is_some_and(|t| now > t)
    }
}

pub fn run(args: LogsArgs) -> anyhow::Result<u8> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse().map_err(|_| anyhow::anyhow!("invalid --tail value {n:?}"))?),
    };
    let window = Window::parse(args.since.as_deref(), args.until.as_deref(), Utc::now())?;
    let store = lifecycle::containers()?;
    let mut c = store.find(&args.container)?;
    let path = c.log_path();
    // Start following before reading, so nothing written in between is lost. As
    // Docker does, --tail picks the last lines first, and the window filters those.
    let mut follower = Follower::at_end(&path)?;
    let records = logs::read_all(&path)?;
    let lines = logs::lines(&records);
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in lines[skip..].iter().filter(|l| window.contains(l)) {
        emit(line, args.timestamps)?;
    }
    if !args.follow || window.closed(Utc::now()) {
        return Ok(0);
    }
    loop {
        let running = c.reload().is_ok() && c.settle().is_ok() && c.state.is_running();
        let new: Vec<Record> = follower.poll()?;
        for line in logs::lines(&new).iter().filter(|l| window.contains(l)) {
            emit(line, args.timestamps)?;
        }
        if !running || window.closed(Utc::now()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line_at(secs: i64) -> Line {
        Line {
            stream: LogStream::Stdout,
            time: DateTime::from_timestamp(secs, 0).unwrap(),
            data: b"x\n".to_vec(),
        }
    }

    #[test]
    fn since_and_until_take_times_and_durations_and_bound_the_lines_shown() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let w = Window::parse(Some("10m"), Some("1699999900"), now).unwrap();
        assert_eq!(w.since, DateTime::from_timestamp(1_699_999_400, 0));
        assert!(!w.contains(&line_at(1_699_999_399)));
        assert!(w.contains(&line_at(1_699_999_400)));
        assert!(w.contains(&line_at(1_699_999_900)));
        assert!(!w.contains(&line_at(1_699_999_901)));
        assert!(w.closed(now));
        let open = Window::parse(Some("2023-11-14T22:13:20Z"), None, now).unwrap();
        assert_eq!(open.since, Some(now));
        assert!(!open.closed(now));
    }

    #[test]
    fn a_value_that_is_no_time_names_its_flag() {
        let now = Utc::now();
        let err = Window::parse(None, Some("soon"), now).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value for --until: \"soon\" is neither a time nor a duration"
        );
    }
}
