//! `hull login` and `hull logout`: credentials for a registry, kept as Docker keeps
//! them (`config.json` `auths`, or a credential helper).

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context};
use hull::image::auth::{self, Credentials, Keeper};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Registry server (default: Docker Hub)
    server: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry server (default: Docker Hub)
    server: Option<String>,
}

pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let registry = registry_of(args.server.as_deref());
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if args.password_stdin {
            bail!("--password and --password-stdin are mutually exclusive");
        }
    }
    if args.password_stdin && args.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ", true)?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => password_from_stdin()?,
        (None, false) => prompt("Password: ", false)?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("Error: Non-null Username and Password Required");
    }
    let credentials = Credentials { username, password };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(hull::image::login::verify(&registry, &credentials))?;
    if let Keeper::File(path) = auth::store(&registry, &credentials)? {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.",
            path.display()
        );
    }
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let registry = registry_of(args.server.as_deref());
    let shown = auth::server_address(&registry);
    if auth::erase(&registry)? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(())
}

/// `https://index.docker.io/v1/`, `docker.io` and no server all name Docker Hub;
/// others reduce to `host[:port]`.
fn registry_of(server: Option<&str>) -> String {
    let Some(server) = server.filter(|s| !s.is_empty()) else {
        return hull::image::reference::DEFAULT_REGISTRY.to_owned();
    };
    let host = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut text)
        .context("reading the password from stdin")?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks on the terminal; the password is read without echo.
fn prompt(what: &str, echo: bool) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("Cannot perform an interactive login from a non TTY device");
    }
    eprint!("{what}");
    std::io::stderr().flush()?;
    let _quiet = (!echo).then(NoEcho::enter);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if !echo {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Terminal echo off until dropped.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn enter() -> NoEcho {
        // SAFETY: termios is plain data that tcgetattr fills; fd 0 is a terminal.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a termios of the right type for tcgetattr to fill.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return NoEcho(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a termios copied from tcgetattr, one flag changed.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
        NoEcho(Some(saved))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `enter`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}
