//! `hull port CONTAINER [PRIVATE_PORT[/PROTO]]`: the container's published ports.

use anyhow::bail;
use hull::container::network::Protocol;

use super::lifecycle;

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]: show only this port
    port: Option<String>,
}

pub fn run(args: PortArgs) -> anyhow::Result<()> {
    let c = lifecycle::containers()?.find(&args.container)?;
    let filter = match args.port.as_deref() {
        None => None,
        Some(spec) => {
            let (port, proto) = match spec.split_once('/') {
                Some((p, "udp")) => (p, Protocol::Udp),
                Some((p, "tcp")) | Some((p, "")) => (p, Protocol::Tcp),
                Some(_) => bail!("invalid port {spec:?}: the protocol must be tcp or udp"),
                None => (spec, Protocol::Tcp),
            };
            let Ok(port) = port.parse::<u16>() else {
                bail!("invalid port {spec:?}")
            };
            Some((port, proto))
        }
    };
    let mut shown = 0;
    for p in &c.config.ports {
        if filter.is_some_and(|(port, proto)| (port, proto) != (p.container_port, p.protocol)) {
            continue;
        }
        let ip = p.host_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "0.0.0.0".into());
        match filter {
            Some(_) => println!("{ip}:{}", p.host_port),
            None => println!("{}/{} -> {ip}:{}", p.container_port, p.protocol, p.host_port),
        }
        shown += 1;
    }
    if shown == 0 {
        if let Some(spec) = &args.port {
            bail!("No public port '{spec}' published for {}", c.config.name);
        }
    }
    Ok(())
}
