use proptest::prelude::*;

use super::*;

const GUEST: [u8; 4] = [10, 0, 2, 15];

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0x68, 0x75, 0x6c, 0x6c, 0x01];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 packet to `dst` with `options` words of options, then `body`.
fn ipv4(dst: [u8; 4], protocol: u8, options: usize, body: &[u8]) -> Vec<u8> {
    let header_len = IPV4_MIN_HDR_LEN + options * 4;
    let mut p = vec![0u8; header_len];
    p[0] = 0x40 | (header_len / 4) as u8;
    p[2..4].copy_from_slice(&((header_len + body.len()) as u16).to_be_bytes());
    p[6] = 0x40; // DF, fragment offset 0
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&GUEST);
    p[16..20].copy_from_slice(&dst);
    for byte in &mut p[IPV4_MIN_HDR_LEN..] {
        *byte = 1; // NOP options
    }
    p.extend_from_slice(body);
    p
}

fn tcp(source_port: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&source_port.to_be_bytes());
    t[2..4].copy_from_slice(&6379u16.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

fn to(dst: [u8; 4]) -> Vec<u8> {
    ethernet(ETHERTYPE_IPV4, &ipv4(dst, IPPROTO_TCP, 0, &tcp(40000, TCP_SYN)))
}

fn policy() -> EgressPolicy {
    EgressPolicy::default()
}

#[test]
fn the_world_and_dns_are_allowed() {
    for dst in [
        [1, 1, 1, 1],
        [10, 0, 2, 3],
        [192, 168, 1, 1],
        [10, 0, 2, 1],
        [255, 255, 255, 255],
    ] {
        assert_eq!(allowed(&to(dst), &policy()), Ok(()), "{dst:?}");
    }
}

#[test]
fn loopback_link_local_and_this_network_are_denied() {
    for dst in [
        [127, 0, 0, 1],
        [127, 255, 255, 254],
        [169, 254, 169, 254],
        [169, 254, 0, 1],
        [0, 0, 0, 0],
        [0, 1, 2, 3],
    ] {
        assert_eq!(
            allowed(&to(dst), &policy()),
            Err(Denied::Destination(dst.into())),
            "{dst:?}"
        );
    }
    // The ranges end where they should.
    for dst in [[128, 0, 0, 1], [169, 253, 255, 255], [169, 255, 0, 0], [1, 0, 0, 0]] {
        assert_eq!(allowed(&to(dst), &policy()), Ok(()), "{dst:?}");
    }
}

#[test]
fn the_gateway_is_denied_unless_opted_in() {
    let gateway = [10, 0, 2, 2];
    assert_eq!(
        allowed(&to(gateway), &policy()),
        Err(Denied::Destination(gateway.into()))
    );
    let open = EgressPolicy {
        allow_gateway: true,
        ..policy()
    };
    assert_eq!(allowed(&to(gateway), &open), Ok(()));
    // Opting in to the gateway opens nothing else.
    assert!(allowed(&to([127, 0, 0, 1]), &open).is_err());
    assert!(allowed(&to([169, 254, 169, 254]), &open).is_err());
    // The gateway is whatever the policy names.
    let elsewhere = EgressPolicy {
        gateway: Ipv4Addr::new(192, 168, 7, 1),
        ..policy()
    };
    assert_eq!(allowed(&to(gateway), &elsewhere), Ok(()));
    assert!(allowed(&to([192, 168, 7, 1]), &elsewhere).is_err());
}

#[test]
fn replies_on_a_published_port_reach_the_gateway_but_never_open_a_connection() {
    let gateway = [10, 0, 2, 2];
    let published = EgressPolicy {
        published_tcp: vec![8080],
        ..policy()
    };
    let segment = |port, flags| ethernet(ETHERTYPE_IPV4, &ipv4(gateway, IPPROTO_TCP, 0, &tcp(port, flags)));
    assert_eq!(allowed(&segment(8080, TCP_SYN | TCP_ACK), &published), Ok(()));
    assert_eq!(allowed(&segment(8080, TCP_ACK), &published), Ok(()));
    // A SYN from the published port would open a connection to the host.
    assert!(allowed(&segment(8080, TCP_SYN), &published).is_err());
    // Another port, UDP from the port, a truncated TCP header: denied.
    assert!(allowed(&segment(8081, TCP_ACK), &published).is_err());
    let udp = ethernet(ETHERTYPE_IPV4, &ipv4(gateway, 17, 0, &tcp(8080, TCP_ACK)));
    assert!(allowed(&udp, &published).is_err());
    let short = ethernet(
        ETHERTYPE_IPV4,
        &ipv4(gateway, IPPROTO_TCP, 0, &tcp(8080, TCP_ACK)[..13]),
    );
    assert!(allowed(&short, &published).is_err());
    // A later fragment carries no TCP header.
    let mut fragment = segment(8080, TCP_ACK);
    fragment[ETH_HDR_LEN + 7] = 1;
    assert!(allowed(&fragment, &published).is_err());
}

#[test]
fn ipv4_options_move_the_transport_header() {
    let gateway = [10, 0, 2, 2];
    let published = EgressPolicy {
        published_tcp: vec![8080],
        ..policy()
    };
    let frame = ethernet(ETHERTYPE_IPV4, &ipv4(gateway, IPPROTO_TCP, 3, &tcp(8080, TCP_ACK)));
    assert_eq!(allowed(&frame, &published), Ok(()));
    // Read at the fixed offset, the NOP options would look like port 0x0101.
    let frame = ethernet(ETHERTYPE_IPV4, &ipv4(gateway, IPPROTO_TCP, 3, &tcp(257, TCP_ACK)));
    assert!(allowed(&frame, &published).is_err());
    assert!(allowed(&ethernet(ETHERTYPE_IPV4, &ipv4([1, 1, 1, 1], 1, 10, &[])), &policy()).is_ok());
    assert!(allowed(&ethernet(ETHERTYPE_IPV4, &ipv4([127, 0, 0, 1], 1, 10, &[])), &policy()).is_err());
}

#[test]
fn bad_ipv4_headers_are_dropped() {
    let mut p = ipv4([1, 1, 1, 1], IPPROTO_TCP, 0, &[]);
    p[0] = 0x45 | 0x20; // version 6 in an IPv4 frame
    assert_eq!(
        allowed(&ethernet(ETHERTYPE_IPV4, &p), &policy()),
        Err(Denied::MalformedIpv4)
    );
    p[0] = 0x44; // IHL below 5
    assert_eq!(
        allowed(&ethernet(ETHERTYPE_IPV4, &p), &policy()),
        Err(Denied::MalformedIpv4)
    );
    p[0] = 0x4f; // IHL 15: 60 bytes, more than the packet
    assert_eq!(
        allowed(&ethernet(ETHERTYPE_IPV4, &p), &policy()),
        Err(Denied::Truncated)
    );
}

#[test]
fn arp_passes_and_other_ethertypes_do_not() {
    assert_eq!(allowed(&ethernet(ETHERTYPE_ARP, &[0; ARP_LEN]), &policy()), Ok(()));
    assert_eq!(
        allowed(&ethernet(ETHERTYPE_ARP, &[0; ARP_LEN - 1]), &policy()),
        Err(Denied::Truncated)
    );
    for ethertype in [0x86dd, 0x8035, 0x88cc, 0x0000, 0xffff] {
        assert_eq!(
            allowed(&ethernet(ethertype, &ipv4([1, 1, 1, 1], 6, 0, &[])), &policy()),
            Err(Denied::EtherType(ethertype))
        );
    }
}

#[test]
fn vlan_tagged_frames_are_dropped() {
    for tag in ETHERTYPE_VLAN {
        // The tag, then an IPv4 EtherType and a packet to an allowed address.
        let mut inner = vec![0x00, 0x01];
        inner.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        inner.extend_from_slice(&ipv4([1, 1, 1, 1], 6, 0, &[]));
        assert_eq!(allowed(&ethernet(tag, &inner), &policy()), Err(Denied::VlanTagged));
    }
}

#[test]
fn every_truncation_of_a_frame_is_denied_without_panicking() {
    let open = EgressPolicy {
        allow_gateway: true,
        ..policy()
    };
    // Each frame, and the shortest prefix of it that passes.
    let frames = [
        (to([1, 1, 1, 1]), ETH_HDR_LEN + IPV4_MIN_HDR_LEN),
        (ethernet(ETHERTYPE_ARP, &[0; ARP_LEN]), ETH_HDR_LEN + ARP_LEN),
        (
            ethernet(
                ETHERTYPE_IPV4,
                &ipv4([10, 0, 2, 2], IPPROTO_TCP, 2, &tcp(8080, TCP_ACK)),
            ),
            ETH_HDR_LEN + IPV4_MIN_HDR_LEN + 8,
        ),
    ];
    for (frame, shortest) in &frames {
        for len in 0..=42 {
            let verdict = allowed(&frame[..len.min(frame.len())], &open);
            assert_eq!(verdict.is_ok(), len >= *shortest, "{len}: {verdict:?}");
        }
    }
    for len in 0..=42 {
        for byte in [0x00, 0x45, 0x4f, 0xff] {
            assert!(allowed(&vec![byte; len], &policy()).is_err());
        }
    }
}

#[test]
fn the_filter_counts_what_it_drops() {
    let mut filter = EgressFilter::new(policy());
    assert!(filter.pass(&to([1, 1, 1, 1])));
    assert!(!filter.pass(&to([127, 0, 0, 1])));
    assert!(!filter.pass(&[]));
    assert_eq!(filter.dropped(), 2);
}

#[test]
fn prefixes_contain_their_addresses() {
    let net = Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 2), 32).unwrap();
    assert!(net.contains(Ipv4Addr::new(10, 0, 2, 2)));
    assert!(!net.contains(Ipv4Addr::new(10, 0, 2, 3)));
    let all = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap();
    assert!(all.contains(Ipv4Addr::BROADCAST));
    assert!(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 33).is_none());
    assert_eq!(ALWAYS_DENIED[1].to_string(), "169.254.0.0/16");
}

proptest! {
    #[test]
    fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..128), port in any::<u16>()) {
        let open = EgressPolicy { allow_gateway: true, published_tcp: vec![port], ..policy() };
        let _ = allowed(&frame, &policy());
        let _ = allowed(&frame, &open);
    }

    #[test]
    fn denied_destinations_are_denied_whatever_the_rest_of_the_packet(
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        host in any::<u16>(),
        options in 0usize..=10,
    ) {
        let [a, b] = host.to_be_bytes();
        let open = EgressPolicy { allow_gateway: true, published_tcp: vec![8080], ..policy() };
        for dst in [[127, a, b, 1], [169, 254, a, b], [0, a, b, 0]] {
            let frame = ethernet(ETHERTYPE_IPV4, &ipv4(dst, IPPROTO_TCP, options, &tail));
            prop_assert_eq!(allowed(&frame, &open), Err(Denied::Destination(dst.into())));
        }
    }
}
