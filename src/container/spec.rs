//! The process a container runs: the image config merged with `run`'s flags, as
//! Docker merges them.

use guest_agent::protocol::ProcessSpec;
use serde_json::Value;

/// Docker's default PATH, added when neither the image nor the flags set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Bounds on what an image config may ask for; beyond them the image is refused.
const MAX_ENV: usize = 10_000;
const MAX_ARGS: usize = 10_000;
const MAX_TOTAL_BYTES: usize = 4 << 20;

/// `run`'s flags that shape the process.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image: replace the image's `Cmd`.
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("no command specified")]
    NoCommand,
    #[error("image config: {0}")]
    BadConfig(String),
    #[error("invalid environment variable {0:?}")]
    BadEnv(String),
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
}

/// The image's `config` object (`Env`, `Cmd`, ...), or an empty one.
fn image_section(image_config: &Value) -> &Value {
    image_config.get("config").unwrap_or(&Value::Null)
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, SpecError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| SpecError::BadConfig(format!("{field} holds a non-string")))
            })
            .collect(),
        Some(_) => Err(SpecError::BadConfig(format!("{field} is not a list"))),
    }
}

fn string(v: Option<&Value>, field: &str) -> Result<String, SpecError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(SpecError::BadConfig(format!("{field} is not a string"))),
    }
}

/// Builds the process spec from the image config and the flags.
pub fn merge(image_config: &Value, o: &Overrides) -> Result<ProcessSpec, SpecError> {
    let c = image_section(image_config);
    let image_env = strings(c.get("Env"), "Env")?;
    let image_entrypoint = strings(c.get("Entrypoint"), "Entrypoint")?;
    let image_cmd = strings(c.get("Cmd"), "Cmd")?;
    // Bounded before any per-entry work, so a hostile config costs nothing.
    if image_env.len() + o.env.len() > MAX_ENV || image_entrypoint.len() + image_cmd.len() > MAX_ARGS {
        return Err(SpecError::BadConfig(format!(
            "{} environment entries and {} arguments exceed the limits ({MAX_ENV}, {MAX_ARGS})",
            image_env.len() + o.env.len(),
            image_entrypoint.len() + image_cmd.len()
        )));
    }
    let image_workdir = string(c.get("WorkingDir"), "WorkingDir")?;
    let image_user = string(c.get("User"), "User")?;

    let entrypoint = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image_entrypoint,
    };
    // A new entrypoint drops the image's Cmd, as in Docker.
    let cmd = if !o.cmd.is_empty() {
        o.cmd.clone()
    } else if o.entrypoint.is_some() {
        Vec::new()
    } else {
        image_cmd
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(SpecError::NoCommand);
    }
    let env = merge_env(&image_env, &o.env)?;
    let cwd = o.workdir.clone().unwrap_or(image_workdir);
    let cwd = if cwd.is_empty() { "/".to_owned() } else { cwd };
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkdir(cwd));
    }
    let user = o.user.clone().unwrap_or(image_user);
    let total: usize = args.iter().chain(&env).map(|s| s.len() + 1).sum::<usize>() + cwd.len() + user.len();
    if env.len() > MAX_ENV || args.len() > MAX_ARGS || total > MAX_TOTAL_BYTES {
        return Err(SpecError::BadConfig(format!(
            "{} environment entries and {} arguments ({total} bytes) exceed the limits ({MAX_ENV}, {MAX_ARGS}, {MAX_TOTAL_BYTES} bytes)",
            env.len(),
            args.len()
        )));
    }
    if [&cwd, &user].iter().any(|s| s.contains('\0')) || args.iter().any(|a| a.contains('\0')) {
        return Err(SpecError::BadConfig(
            "a NUL byte in the command, user or working directory".into(),
        ));
    }
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        user,
        tty: o.tty,
        stdin: o.stdin,
        detached: false,
        group_add: Vec::new(),
        ulimits: Vec::new(),
    })
}

/// Image env, then flags; later keys replace earlier ones (keeping the first
/// position, as Docker does); PATH defaulted.
fn merge_env(image: &[String], flags: &[String]) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::with_capacity(image.len() + flags.len() + 1);
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for entry in image.iter().chain(flags) {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        if key.is_empty() || entry.contains('\0') {
            return Err(SpecError::BadEnv(entry.chars().take(80).collect()));
        }
        if !entry.contains('=') {
            continue;
        }
        match index.get(key) {
            Some(&i) => env[i] = entry.clone(),
            None => {
                index.insert(key.to_owned(), env.len());
                env.push(entry.clone());
            }
        }
    }
    if !index.contains_key("PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    Ok(env)
}

/// `-e NAME` without a value takes the host's value (and is dropped when unset).
pub fn expand_host_env(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// Lines of an `--env-file`: `#` comments and blank lines skipped.
pub fn parse_env_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A size as Docker's flags take it: bytes, or a number with `b`, `k`, `m` or `g`
/// (`kb`, `mb`, `gb` too).
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len()));
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.strip_suffix('b').unwrap_or(unit) {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// The image's `StopSignal` (`SIGTERM`, `TERM`, `15`), SIGTERM by default.
pub fn stop_signal(image_config: &Value) -> i32 {
    let s = image_section(image_config)
        .get("StopSignal")
        .and_then(Value::as_str)
        .unwrap_or("");
    parse_signal(s).unwrap_or(libc::SIGTERM)
}

/// Signal names (without `SIG`) and numbers; the first name of a number is its own.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Signal names and numbers as `docker kill -s` takes them.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|&(_, number)| number)
}

/// `SIGTERM` for 15; a number without a name (a real-time signal) as `SIGRTMIN+N`.
pub fn signal_name(signal: i32) -> String {
    match SIGNALS.iter().find(|&&(_, n)| n == signal) {
        Some((name, _)) => format!("SIG{name}"),
        None if signal >= libc::SIGRTMIN() => format!("SIGRTMIN+{}", signal - libc::SIGRTMIN()),
        None => signal.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(config: Value) -> Value {
        json!({ "config": config })
    }

    #[test]
    fn cmd_args_replace_image_cmd_and_keep_entrypoint() {
        let img = image(json!({"Entrypoint": ["/ep"], "Cmd": ["a"], "Env": ["A=1"]}));
        let o = Overrides {
            cmd: vec!["b".into()],
            ..Default::default()
        };
        let spec = merge(&img, &o).unwrap();
        assert_eq!(spec.args, vec!["/ep", "b"]);
        assert_eq!(spec.env, vec![format!("PATH={DEFAULT_PATH}"), "A=1".into()]);
        assert_eq!(spec.cwd, "/");
    }

    #[test]
    fn entrypoint_flag_drops_image_cmd() {
        let img = image(json!({"Entrypoint": ["/ep"], "Cmd": ["a"]}));
        let o = Overrides {
            entrypoint: Some("/bin/true".into()),
            ..Default::default()
        };
        assert_eq!(merge(&img, &o).unwrap().args, vec!["/bin/true"]);
    }

    #[test]
    fn flags_override_env_workdir_user() {
        let img = image(json!({"Cmd": ["sh"], "Env": ["PATH=/x", "A=1"], "WorkingDir": "/srv", "User": "app"}));
        let o = Overrides {
            env: vec!["A=2".into(), "B=3".into()],
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
            ..Default::default()
        };
        let spec = merge(&img, &o).unwrap();
        assert_eq!(spec.env, vec!["PATH=/x", "A=2", "B=3"]);
        assert_eq!((spec.cwd.as_str(), spec.user.as_str()), ("/tmp", "0:0"));
    }

    #[test]
    fn hostile_configs_are_refused_or_contained() {
        // Empty entrypoint and cmd.
        assert_eq!(
            merge(&image(json!({"Entrypoint": [], "Cmd": []})), &Overrides::default()),
            Err(SpecError::NoCommand)
        );
        assert_eq!(
            merge(&image(json!({"Cmd": [""]})), &Overrides::default()),
            Err(SpecError::NoCommand)
        );
        // Odd WorkingDir.
        assert!(matches!(
            merge(
                &image(json!({"Cmd": ["x"], "WorkingDir": "../../etc"})),
                &Overrides::default()
            ),
            Err(SpecError::RelativeWorkdir(_))
        ));
        // 100k env entries.
        let env: Vec<String> = (0..100_000).map(|i| format!("V{i}=x")).collect();
        assert!(matches!(
            merge(&image(json!({"Cmd": ["x"], "Env": env})), &Overrides::default()),
            Err(SpecError::BadConfig(_))
        ));
        // Wrong types.
        assert!(matches!(
            merge(&image(json!({"Cmd": "sh -c x"})), &Overrides::default()),
            Err(SpecError::BadConfig(_))
        ));
        assert!(matches!(
            merge(&image(json!({"Cmd": ["x"], "Env": ["=x"]})), &Overrides::default()),
            Err(SpecError::BadEnv(_))
        ));
        // An absurd User is passed on; the agent resolves (and refuses) it.
        let spec = merge(&image(json!({"Cmd": ["x"], "User": "a:b:c:d"})), &Overrides::default()).unwrap();
        assert_eq!(spec.user, "a:b:c:d");
    }

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("sigterm"), Some(15));
        assert_eq!(parse_signal("10"), Some(10));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(stop_signal(&image(json!({"StopSignal": "SIGQUIT"}))), libc::SIGQUIT);
        assert_eq!(stop_signal(&json!({})), libc::SIGTERM);
        assert_eq!(signal_name(libc::SIGQUIT), "SIGQUIT");
        assert_eq!(signal_name(libc::SIGABRT), "SIGABRT");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
        assert_eq!(parse_signal("sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("IOT"), Some(libc::SIGABRT));
        assert_eq!(parse_signal("NOPE"), None);
    }

    #[test]
    fn env_file_skips_comments() {
        assert_eq!(parse_env_file("# c\n\nA=1\n  B=2\nC\n"), vec!["A=1", "B=2", "C"]);
    }
}
