#![no_main]
//! What a registry and a user's Docker config send the auth code: `$DOCKER_CONFIG/
//! config.json` credentials, a `WWW-Authenticate` challenge read as oci-client reads
//! it (http-auth's parser, then the Bearer realm and service), and the token reply.
//! No panic, no hang, and no credential in a Debug form or an error.

use std::error::Error;
use std::path::Path;

use http_auth::parser::ChallengeParser;
use hull::image::auth::parse_config;
use libfuzzer_sys::fuzz_target;

/// Every string value of an `auths` entry, of at least 8 bytes and not part of a
/// registry key (which errors do name): what an error must not show.
fn secrets(data: &[u8]) -> Vec<String> {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Vec::new();
    };
    let values = auths.values().filter_map(|e| e.as_object()).flat_map(|e| e.values());
    values
        .filter_map(|v| v.as_str())
        .filter(|s| s.len() >= 8 && !auths.keys().any(|k| k.contains(*s)))
        .map(str::to_owned)
        .collect()
}

fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn config_json(data: &[u8]) {
    let path = Path::new("/fuzz/config.json");
    for registry in ["docker.io", "localhost:5000", "r"] {
        match parse_config(data, path, registry) {
            Ok(Some(c)) => assert_eq!(format!("{c:?}"), format!("Credentials({}, <redacted>)", c.username)),
            Ok(None) => {}
            Err(e) => {
                let text = chain(&e);
                for secret in secrets(data) {
                    assert!(!text.contains(&secret), "credential in error: {text}");
                }
            }
        }
    }
}

/// The Bearer challenge as oci-client picks it: the first well-formed challenge whose
/// scheme is Bearer and which has a realm.
fn challenge(header: &str) {
    let bearer = ChallengeParser::new(header).filter_map(Result::ok).find_map(|c| {
        if !c.scheme.eq_ignore_ascii_case("Bearer") {
            return None;
        }
        let mut realm = None;
        let mut service = None;
        for (k, v) in &c.params {
            let unescaped = v.to_unescaped();
            assert_eq!(unescaped.len(), v.unescaped_len());
            assert!(unescaped.len() <= header.len());
            if k.eq_ignore_ascii_case("realm") {
                realm = Some(unescaped);
            } else if k.eq_ignore_ascii_case("service") {
                service = Some(unescaped);
            }
        }
        realm.map(|r| (r, service))
    });
    if let Some((realm, _service)) = bearer {
        assert!(realm.len() <= header.len());
    }
}

fuzz_target!(|data: &[u8]| {
    config_json(data);
    if let Ok(header) = std::str::from_utf8(data) {
        challenge(header);
    }
    if let Ok(token) = serde_json::from_slice::<oci_client::token_cache::RegistryToken>(data) {
        assert!(format!("{token:?}").contains("<redacted>"));
    }
});
