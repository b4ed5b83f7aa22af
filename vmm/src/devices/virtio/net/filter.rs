//! The egress filter: every frame the guest sends passes [`allowed`] before it
//! reaches the backend, so what the guest may reach is decided by host code the
//! guest cannot change.
//!
//! The backend (passt, `--ipv4-only`) speaks IPv4 and ARP only, so everything else
//! is dropped, and so are VLAN-tagged frames (a tag would hide the EtherType). IPv4
//! packets to the host's loopback, link-local addresses (cloud metadata endpoints)
//! and `0.0.0.0/8` never pass; packets to the gateway pass only when the container
//! opted in, or when they are the guest's side of a TCP connection the host opened
//! to a published port (passt shows a client on the host's loopback as coming from
//! the gateway). Every header read is bounds-checked: the frame is the guest's.

use std::fmt;
use std::net::Ipv4Addr;

/// Length of an Ethernet header without a VLAN tag.
const ETH_HDR_LEN: usize = 14;
/// Length of an ARP packet for IPv4 over Ethernet.
const ARP_LEN: usize = 28;
/// Length of an IPv4 header without options.
const IPV4_MIN_HDR_LEN: usize = 20;
/// Length of a TCP header up to and including its flags.
const TCP_FLAGS_END: usize = 14;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
/// 802.1Q, 802.1ad (QinQ) and the old QinQ tag.
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// An IPv4 prefix, `ADDR/LEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    /// The prefix of the first `len` bits of `addr`; `None` when `len` is above 32.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Net> {
        if len > 32 {
            return None;
        }
        Some(Ipv4Net { addr, len })
    }

    fn mask(self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0)
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Destinations no guest reaches, whatever its policy: the host's loopback,
/// link-local addresses and "this network".
pub const ALWAYS_DENIED: [Ipv4Net; 3] = [
    Ipv4Net {
        addr: Ipv4Addr::new(127, 0, 0, 0),
        len: 8,
    },
    Ipv4Net {
        addr: Ipv4Addr::new(169, 254, 0, 0),
        len: 16,
    },
    Ipv4Net {
        addr: Ipv4Addr::new(0, 0, 0, 0),
        len: 8,
    },
];

pub use vmm_config::{EgressPolicy, DEFAULT_GATEWAY};

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// shorter than the headers it claims
    Truncated,
    /// carries a VLAN tag
    VlanTagged,
    /// neither IPv4 nor ARP
    EtherType(u16),
    /// an IPv4 header with a bad version or length
    MalformedIpv4,
    /// an IPv4 destination the policy denies
    Destination(Ipv4Addr),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Denied::Truncated => f.write_str("truncated frame"),
            Denied::VlanTagged => f.write_str("vlan-tagged frame"),
            Denied::EtherType(t) => write!(f, "ethertype {t:#06x} not allowed"),
            Denied::MalformedIpv4 => f.write_str("malformed ipv4 header"),
            Denied::Destination(ip) => write!(f, "destination {ip} denied"),
        }
    }
}

/// Decides whether the guest may send `frame` (an Ethernet frame, no virtio header).
pub fn allowed(frame: &[u8], policy: &EgressPolicy) -> Result<(), Denied> {
    let ethertype = be16(frame, 12).ok_or(Denied::Truncated)?;
    let payload = frame.get(ETH_HDR_LEN..).ok_or(Denied::Truncated)?;
    match ethertype {
        ETHERTYPE_ARP if payload.len() >= ARP_LEN => Ok(()),
        ETHERTYPE_ARP => Err(Denied::Truncated),
        ETHERTYPE_IPV4 => ipv4_allowed(payload, policy),
        t if ETHERTYPE_VLAN.contains(&t) => Err(Denied::VlanTagged),
        t => Err(Denied::EtherType(t)),
    }
}

fn ipv4_allowed(packet: &[u8], policy: &EgressPolicy) -> Result<(), Denied> {
    let header_len = ipv4_header_len(packet)?;
    let dst = packet.get(16..20).ok_or(Denied::Truncated)?;
    let dst = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
    if ALWAYS_DENIED.iter().any(|net| net.contains(dst)) {
        return Err(Denied::Destination(dst));
    }
    if dst == policy.gateway && !policy.allow_gateway && !published_reply(packet, header_len, policy) {
        return Err(Denied::Destination(dst));
    }
    Ok(())
}

/// The IPv4 header's length, checked against the version, its minimum and the packet.
fn ipv4_header_len(packet: &[u8]) -> Result<usize, Denied> {
    let first = *packet.first().ok_or(Denied::Truncated)?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < IPV4_MIN_HDR_LEN {
        return Err(Denied::MalformedIpv4);
    }
    if packet.len() < header_len {
        return Err(Denied::Truncated);
    }
    Ok(header_len)
}

/// A TCP segment of a published port that opens no connection: the guest answering
/// a client the host connected (passt, not the guest, opens those).
fn published_reply(packet: &[u8], header_len: usize, policy: &EgressPolicy) -> bool {
    let first_fragment = be16(packet, 6).is_some_and(|f| f & 0x1fff == 0);
    if packet.get(9) != Some(&IPPROTO_TCP) || !first_fragment {
        return false;
    }
    let Some(tcp) = packet.get(header_len..).filter(|t| t.len() >= TCP_FLAGS_END) else {
        return false;
    };
    let (source_port, flags) = (u16::from_be_bytes([tcp[0], tcp[1]]), tcp[13]);
    let opens = flags & TCP_SYN != 0 && flags & TCP_ACK == 0;
    !opens && policy.published_tcp.contains(&source_port)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// A device's policy and its count of dropped frames.
#[derive(Debug, Default)]
pub struct EgressFilter {
    policy: EgressPolicy,
    dropped: u64,
}

impl EgressFilter {
    /// A filter applying `policy`.
    pub fn new(policy: EgressPolicy) -> Self {
        EgressFilter { policy, dropped: 0 }
    }

    /// Whether `frame` may go to the backend; a denied frame is counted and warned
    /// about (rate-limited).
    pub fn pass(&mut self, frame: &[u8]) -> bool {
        match allowed(frame, &self.policy) {
            Ok(()) => true,
            Err(why) => {
                self.dropped += 1;
                crate::warn_limited!("virtio-net: tx frame dropped: {why} ({} dropped so far)", self.dropped);
                false
            }
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests;
