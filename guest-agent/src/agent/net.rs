//! The container's network. Loopback always comes up. With `hull.net=ADDR/PREFIX,GW`
//! on the kernel command line (and `hull.mtu=N`), `eth0` (the VMM's virtio-net, whose
//! frames go to `passt` on the host) gets that address, MTU and a default route.
//! Without it the container has loopback only (`--network none`).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the host asked for eth0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

impl NetConfig {
    /// `10.0.2.15/24,10.0.2.2`; anything malformed is ignored (no network).
    pub fn parse(value: &str, mtu: Option<&str>) -> Option<NetConfig> {
        let (cidr, gateway) = value.split_once(',')?;
        let (address, prefix) = cidr.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (1..=30).contains(p))?;
        let mtu = match mtu {
            Some(m) => m.parse().ok().filter(|m| (576..=65520).contains(m))?,
            None => 1500,
        };
        Some(NetConfig {
            address: address.parse().ok()?,
            prefix,
            gateway: gateway.parse().ok()?,
            mtu,
        })
    }

    fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }
}

/// Brings up loopback, then eth0 as `config` says.
pub fn configure(config: Option<&NetConfig>) -> io::Result<()> {
    let sock = socket()?;
    set_flags(&sock, "lo", libc::IFF_UP as libc::c_short).map_err(ctx("lo up"))?;
    let Some(c) = config else { return Ok(()) };
    set_addr(&sock, "eth0", libc::SIOCSIFADDR, c.address).map_err(ctx("eth0 address"))?;
    set_addr(&sock, "eth0", libc::SIOCSIFNETMASK, c.netmask()).map_err(ctx("eth0 netmask"))?;
    let mut req = ifreq("eth0")?;
    req.ifr_ifru.ifru_mtu = c.mtu as libc::c_int;
    ioctl(&sock, libc::SIOCSIFMTU, &mut req).map_err(ctx("eth0 mtu"))?;
    announce_on_link_up("eth0").map_err(ctx("eth0 arp_notify"))?;
    set_flags(&sock, "eth0", (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short).map_err(ctx("eth0 up"))?;
    add_default_route(&sock, "eth0", c.gateway).map_err(ctx("default route"))
}

/// Makes the kernel send a gratuitous ARP when `dev` comes up. passt learns the
/// guest's MAC address from the first frame the guest sends, and until then sends
/// to the broadcast address, which the guest's TCP drops. A container that only
/// serves (`-p`) would otherwise never be reached: the VMM drops the IPv6 router
/// solicitations that used to be its first frames.
fn announce_on_link_up(dev: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/arp_notify"), "1")
}

fn ctx(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("network: {what}: {e}"))
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ioctl<T>(sock: &OwnedFd, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is the structure `request` expects, alive for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg as *mut T) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; this is how the socket
    // API passes an IPv4 address as a generic one.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn set_addr(sock: &OwnedFd, name: &str, request: libc::c_ulong, addr: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(addr);
    ioctl(sock, request, &mut req)
}

fn set_flags(sock: &OwnedFd, name: &str, flags: libc::c_short) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = flags;
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req)
}

/// `struct rtentry` from `<net/route.h>` (the kernel ABI; libc has it for musl only).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_tos: libc::c_uchar,
    rt_class: libc::c_uchar,
    rt_pad4: [libc::c_short; 3],
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn add_default_route(sock: &OwnedFd, dev: &str, gateway: Ipv4Addr) -> io::Result<()> {
    let mut dev = std::ffi::CString::new(dev)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?
        .into_bytes_with_nul();
    let mut route = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr(gateway),
        rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_flags: 0x0001 | 0x0002, // RTF_UP | RTF_GATEWAY
        rt_pad2: 0,
        rt_pad3: 0,
        rt_tos: 0,
        rt_class: 0,
        rt_pad4: [0; 3],
        rt_metric: 0,
        rt_dev: dev.as_mut_ptr().cast(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    ioctl(sock, libc::SIOCADDRT, &mut route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_form_parses_and_bad_values_mean_no_network() {
        let c = NetConfig::parse("10.0.2.15/24,10.0.2.2", Some("1500")).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.gateway, Ipv4Addr::new(10, 0, 2, 2));
        for bad in [
            "10.0.2.15,10.0.2.2",
            "10.0.2.15/33,10.0.2.2",
            "x/24,10.0.2.2",
            "10.0.2.15/24",
        ] {
            assert_eq!(NetConfig::parse(bad, None), None, "{bad}");
        }
        assert_eq!(NetConfig::parse("10.0.2.15/24,10.0.2.2", Some("70000")), None);
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }
}
