//! Docker's credential helper protocol: `docker-credential-NAME get|store|erase`,
//! the server address or a JSON object on stdin, JSON on stdout.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};

use super::Credentials;

/// The most a helper may print.
const MAX_OUTPUT: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot run credential helper {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper {program} {action} failed: {reason}")]
    Failed {
        program: String,
        action: &'static str,
        reason: String,
    },
    #[error("credential helper {program} printed no valid credentials")]
    Output { program: String },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// What a helper run printed, and whether it succeeded.
struct Outcome {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn program(name: &str) -> String {
    format!("docker-credential-{name}")
}

fn run(name: &str, action: &'static str, input: &[u8]) -> Result<Outcome, HelperError> {
    let program = program(name);
    let spawn_err = |source| HelperError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(input);
    }
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(MAX_OUTPUT).read_to_end(&mut stdout).map_err(spawn_err)?;
    }
    let mut stderr = Vec::new();
    if let Some(err) = child.stderr.take() {
        err.take(MAX_OUTPUT).read_to_end(&mut stderr).map_err(spawn_err)?;
    }
    let status = child.wait().map_err(spawn_err)?;
    Ok(Outcome {
        success: status.success(),
        stdout,
        stderr,
    })
}

/// The helper's complaint as one printable line, never containing `secret`.
fn reason(outcome: &Outcome, secret: Option<&str>) -> String {
    let text = if outcome.stdout.is_empty() {
        &outcome.stderr
    } else {
        &outcome.stdout
    };
    let line = crate::image::registry::reason_line(String::from_utf8_lossy(text).trim());
    match secret {
        Some(s) if !s.is_empty() && line.contains(s) => "<output withheld>".to_owned(),
        _ if line.is_empty() => "no message".to_owned(),
        _ => line,
    }
}

fn not_found(outcome: &Outcome) -> bool {
    String::from_utf8_lossy(&outcome.stdout)
        .to_lowercase()
        .contains("credentials not found")
}

/// `get`: the credentials the helper keeps for `server`, or none.
pub fn get(name: &str, server: &str) -> Result<Option<Credentials>, HelperError> {
    let outcome = run(name, "get", server.as_bytes())?;
    if !outcome.success {
        if not_found(&outcome) {
            return Ok(None);
        }
        return Err(HelperError::Failed {
            program: program(name),
            action: "get",
            reason: reason(&outcome, None),
        });
    }
    let entry: Entry =
        serde_json::from_slice(&outcome.stdout).map_err(|_| HelperError::Output { program: program(name) })?;
    Ok(Some(Credentials {
        username: entry.username,
        password: entry.secret,
    }))
}

/// `store`: hands the helper `credentials` for `server`.
pub fn store(name: &str, server: &str, credentials: &Credentials) -> Result<(), HelperError> {
    let entry = Entry {
        server_url: server.to_owned(),
        username: credentials.username.clone(),
        secret: credentials.password.clone(),
    };
    let input = serde_json::to_vec(&entry).map_err(|_| HelperError::Output { program: program(name) })?;
    let outcome = run(name, "store", &input)?;
    if outcome.success {
        return Ok(());
    }
    Err(HelperError::Failed {
        program: program(name),
        action: "store",
        reason: reason(&outcome, Some(&credentials.password)),
    })
}

/// `erase`: false when the helper had nothing for `server`.
pub fn erase(name: &str, server: &str) -> Result<bool, HelperError> {
    let outcome = run(name, "erase", server.as_bytes())?;
    if outcome.success {
        return Ok(true);
    }
    if not_found(&outcome) {
        return Ok(false);
    }
    Err(HelperError::Failed {
        program: program(name),
        action: "erase",
        reason: reason(&outcome, None),
    })
}
