//! `hull inspect` (containers, then images) and `hull container inspect`.

use std::io::Write;

use guest_agent::protocol::{Resources, CPU_PERIOD_US};
use hull::container::mounts::Mount;
use hull::container::resources::DEFAULT_SHM_BYTES;
use hull::container::{Container, ContainerError, Status};
use serde_json::json;

use super::lifecycle;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Containers or images
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(args: InspectArgs, images_too: bool) -> anyhow::Result<u8> {
    let store = lifecycle::containers()?;
    let mut out = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match store.find(name) {
            Ok(c) => out.push(describe(&c)),
            Err(ContainerError::NoSuchContainer(_)) if images_too => match super::inspect::describe_image(name) {
                Ok(v) => out.push(v),
                Err(_) => {
                    eprintln!("hull: No such object: {name}");
                    failed = true;
                }
            },
            Err(e) => {
                eprintln!("hull: {}", hull::error::error_chain(&e));
                failed = true;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", super::inspect::pretty(&serde_json::Value::Array(out))?)?;
    Ok(if failed { super::EXIT_HULL_FAILURE } else { 0 })
}

/// Docker's `MemorySwap`: memory and swap together, -1 for no limit, 0 when unset.
fn memory_swap(limits: &Resources) -> i64 {
    match (limits.memory, limits.swap) {
        (Some(_), Some(u64::MAX)) => -1,
        (Some(memory), Some(swap)) => i64::try_from(memory.saturating_add(swap)).unwrap_or(i64::MAX),
        _ => 0,
    }
}

fn describe(c: &Container) -> serde_json::Value {
    let s = &c.state;
    let limits = &c.config.limits;
    let p = &c.config.process;
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
    };
    let status = match s.status {
        Status::Created if s.monitor.is_some() => "running",
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    };
    json!({
        "Id": c.id(),
        "Created": time(Some(c.config.created)),
        "Path": p.args.first(),
        "Args": p.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": status,
            "Running": s.is_running(),
            "Pid": s.vmm.map(|v| v.pid).unwrap_or(0),
            "OOMKilled": s.oom_killed,
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error,
            "StartedAt": time(s.started_at),
            "FinishedAt": time(s.finished_at),
            // hull's own: output that did not fit the log or the console cap.
            "LogBytesDropped": s.log_dropped_bytes,
            "ConsoleBytesDropped": s.console_dropped_bytes,
        },
        "Image": c.config.image_id,
        "Name": format!("/{}", c.config.name),
        "LogPath": c.log_path(),
        "HostConfig": {
            "AutoRemove": c.config.auto_remove,
            "Memory": limits.memory.unwrap_or(0),
            "MemorySwap": memory_swap(limits),
            "NanoCpus": c.config.nano_cpus,
            "CpuPeriod": if limits.cpu_quota.is_some() { CPU_PERIOD_US } else { 0 },
            "CpuQuota": limits.cpu_quota.unwrap_or(0),
            "CpusetCpus": limits.cpuset.as_deref().unwrap_or(""),
            "PidsLimit": limits.pids,
            "ShmSize": limits.shm.unwrap_or(DEFAULT_SHM_BYTES),
            "NetworkMode": c.config.network.name(),
            "PortBindings": port_map(&c.config.ports),
            "ExtraHosts": extra_hosts(&c.config.extra_hosts),
            "ReadonlyRootfs": c.config.read_only,
            "GroupAdd": if p.group_add.is_empty() { serde_json::Value::Null } else { json!(p.group_add) },
            "Sysctls": c.config.sysctls.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "Ulimits": p.ulimits.iter().map(|u| json!({
                "Name": u.name,
                "Soft": hull::container::tunables::shown_limit(u.soft),
                "Hard": hull::container::tunables::shown_limit(u.hard),
            })).collect::<Vec<_>>(),
        },
        "Mounts": c.config.mounts.iter().map(describe_mount).collect::<Vec<_>>(),
        "NetworkSettings": network_settings(c),
        "Config": {
            "Hostname": c.config.hostname,
            "User": p.user,
            "Tty": p.tty,
            "OpenStdin": p.stdin,
            "Env": p.env,
            "Cmd": p.args,
            "Image": c.config.image,
            "WorkingDir": p.cwd,
            "StopSignal": hull::container::spec::signal_name(c.config.stop_signal),
            "StopTimeout": c.config.stop_timeout,
            "Labels": c.config.labels,
        },
        "Hull": {
            // What the VM got (the limits above apply inside it).
            "VM": {
                "CPUs": c.config.vcpus,
                "Memory": u64::from(c.config.memory_mib) << 20,
            },
            "RootDisk": c.config.rootfs,
            "WritableLayer": if c.config.tmpfs_upper { json!("tmpfs") } else { json!(c.upper_path()) },
            "Console": c.console_path(),
        },
    })
}

/// One entry of Docker's `Mounts`.
fn describe_mount(m: &Mount) -> serde_json::Value {
    let mode = if m.read_only() { "ro" } else { "" };
    match m {
        Mount::Bind { source, target, .. } => json!({
            "Type": "bind",
            "Source": source,
            "Destination": target,
            "Mode": mode,
            "RW": !m.read_only(),
            "Propagation": "rprivate",
        }),
        Mount::Volume {
            name, source, target, ..
        } => json!({
            "Type": "volume",
            "Name": name,
            "Source": source,
            "Destination": target,
            "Driver": "local",
            "Mode": mode,
            "RW": !m.read_only(),
            "Propagation": "",
        }),
        Mount::Tmpfs { target, options } => json!({
            "Type": "tmpfs",
            "Source": "",
            "Destination": target,
            "Mode": options.to_string(),
            "RW": true,
            "Propagation": "",
        }),
    }
}

/// Docker's `{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}`.
/// `--add-host` as given (`NAME:host-gateway`, `NAME:IP`); `null` without any, as in
/// Docker.
fn extra_hosts(hosts: &[hull::container::network::ExtraHost]) -> serde_json::Value {
    if hosts.is_empty() {
        return serde_json::Value::Null;
    }
    json!(hosts.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn port_map(ports: &[hull::container::network::PortMapping]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let binding = json!({
            "HostIp": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "HostPort": p.host_port.to_string(),
        });
        let list = map.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(binding);
        }
    }
    serde_json::Value::Object(map)
}

fn network_settings(c: &hull::container::Container) -> serde_json::Value {
    use hull::container::network::{NetworkMode, GATEWAY, GUEST_ADDRESS, GUEST_PREFIX};
    match c.config.network {
        NetworkMode::User => json!({
            "IPAddress": GUEST_ADDRESS,
            "IPPrefixLen": GUEST_PREFIX,
            "Gateway": GATEWAY,
            "Ports": port_map(&c.config.ports),
        }),
        NetworkMode::None => json!({"IPAddress": "", "Gateway": "", "Ports": {}}),
    }
}
