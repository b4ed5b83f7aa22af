//! `hull version` and `hull info`: what this build is, what a VM boots from, and
//! what the store holds.
//!
//! The assets are located as a run locates them ([`Assets`]), each on its own, so one
//! that is missing is named without hiding the others; neither command fails for it.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use hull::container::assets::{self, check_kvm, AssetError, Assets};
use hull::container::resources::{self, ResourceFlags};
use hull::container::{runtime_root, ContainerStore};
use hull::image::manifest::Platform;

use super::format::binary_size;

#[derive(Debug, clap::Args)]
pub struct VersionArgs {}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {}

/// The `linux/amd64` of this build.
fn os_arch() -> String {
    let p = Platform::host();
    format!("{}/{}", p.os, p.architecture)
}

/// An asset's path, or why there is none (the reason also becomes a warning).
fn asset(found: Result<PathBuf, AssetError>, warnings: &mut Vec<String>) -> Option<PathBuf> {
    found.map_err(|e| warnings.push(e.to_string())).ok()
}

fn shown(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or("not found".into(), |p| p.display().to_string())
}

/// The guest kernel's release, when its image has a banner.
fn kernel_release(kernel: &Option<PathBuf>, warnings: &mut Vec<String>) -> String {
    let Some(path) = kernel else { return "unknown".into() };
    match assets::kernel_version(path) {
        Ok(Some(release)) => release,
        Ok(None) => "unknown (no version banner in the image)".into(),
        Err(e) => {
            warnings.push(format!("reading the guest kernel {}: {e}", path.display()));
            "unknown".into()
        }
    }
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("WARNING: {w}");
    }
}

pub fn version(_args: VersionArgs) -> anyhow::Result<()> {
    let mut warnings = Vec::new();
    let kernel = asset(Assets::kernel(), &mut warnings);
    let vmm = asset(Assets::vmm(), &mut warnings);
    let agent = asset(Assets::agent(), &mut warnings);
    let release = kernel_release(&kernel, &mut warnings);
    let mut out = std::io::stdout().lock();
    let row = |out: &mut dyn Write, indent: &str, key: &str, value: &str| {
        let key = format!("{indent}{key}:");
        writeln!(out, "{key:<20}{value}")
    };
    writeln!(out, "Client:")?;
    row(&mut out, " ", "Version", env!("CARGO_PKG_VERSION"))?;
    let commit = env!("HULL_GIT_COMMIT");
    if !commit.is_empty() {
        row(&mut out, " ", "Git commit", commit)?;
    }
    let rustc = env!("HULL_RUSTC_VERSION");
    if !rustc.is_empty() {
        row(&mut out, " ", "Rust version", rustc)?;
    }
    row(&mut out, " ", "OS/Arch", &os_arch())?;
    writeln!(out)?;
    writeln!(out, "VM:")?;
    writeln!(out, " Kernel:")?;
    row(&mut out, "  ", "Version", &release)?;
    row(&mut out, "  ", "Path", &shown(&kernel))?;
    writeln!(out, " VMM:")?;
    row(&mut out, "  ", "Path", &shown(&vmm))?;
    writeln!(out, " Guest agent:")?;
    row(&mut out, "  ", "Path", &shown(&agent))?;
    drop(out);
    print_warnings(&warnings);
    Ok(())
}

/// The value of `key` in `/etc/os-release` style text, unquoted.
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// The host's kernel release (`uname -r`).
fn host_kernel() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The host's memory, from `/proc/meminfo`'s `MemTotal` (in KiB there).
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn info(_args: InfoArgs) -> anyhow::Result<()> {
    let store = super::open_store()?;
    let containers = ContainerStore::open(store.root())?.list()?;
    let running = containers.iter().filter(|c| c.state.is_running()).count();
    let images: HashSet<_> = store.records()?.into_iter().map(|r| r.manifest.digest).collect();
    let host_cpus = resources::host_cpus();
    let default_vm = resources::plan(&ResourceFlags::default(), host_cpus)?;
    let mut warnings = Vec::new();
    let kernel = asset(Assets::kernel(), &mut warnings);
    let vmm = asset(Assets::vmm(), &mut warnings);
    let agent = asset(Assets::agent(), &mut warnings);
    let release = kernel_release(&kernel, &mut warnings);
    let kvm = match check_kvm() {
        Ok(()) => "usable (/dev/kvm)".to_owned(),
        Err(e) => {
            warnings.push(e);
            "not usable".to_owned()
        }
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| os_release_value(&t, "PRETTY_NAME"))
        .unwrap_or_else(|| "unknown".into());
    let unknown = || "unknown".to_owned();
    let mut out = std::io::stdout().lock();
    writeln!(out, "Client:")?;
    writeln!(out, " Version:    {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out)?;
    writeln!(out, "Containers: {}", containers.len())?;
    writeln!(out, " Running: {running}")?;
    // hull has no pause: a VM runs or it does not.
    writeln!(out, " Paused: 0")?;
    writeln!(out, " Stopped: {}", containers.len() - running)?;
    writeln!(out, "Images: {}", images.len())?;
    writeln!(out, "Hull Root Dir: {}", store.root().display())?;
    writeln!(out, "Runtime Dir: {}", runtime_root().display())?;
    writeln!(out, "Default VM:")?;
    writeln!(out, " CPUs: {}", default_vm.vcpus)?;
    writeln!(
        out,
        " Total Memory: {}",
        binary_size(u64::from(default_vm.vm_memory_mib) << 20)
    )?;
    writeln!(out, "Guest Kernel: {}", shown(&kernel))?;
    writeln!(out, " Version: {release}")?;
    writeln!(out, "VMM: {}", shown(&vmm))?;
    writeln!(out, "Guest Agent: {}", shown(&agent))?;
    writeln!(out, "KVM: {kvm}")?;
    writeln!(out, "Kernel Version: {}", host_kernel().unwrap_or_else(unknown))?;
    writeln!(out, "Operating System: {os}")?;
    writeln!(out, "OSType: {}", Platform::host().os)?;
    writeln!(out, "Architecture: {}", std::env::consts::ARCH)?;
    writeln!(out, "CPUs: {host_cpus}")?;
    writeln!(out, "Total Memory: {}", host_memory().map_or_else(unknown, binary_size))?;
    drop(out);
    print_warnings(&warnings);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_are_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_value(text, "VERSION"), None);
    }
}
