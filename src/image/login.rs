//! Checking credentials against a registry before `login` keeps them: `GET /v2/`,
//! then the challenge it answers with (basic, or a bearer token from its realm).
//! Answers are read bounded and under a deadline; the registry is untrusted.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;

use super::auth::Credentials;
use super::push::describe;
use super::registry::is_insecure;

const DEADLINE: Duration = Duration::from_secs(30);
/// The most of a token answer read.
const MAX_TOKEN_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("login to {registry} failed: unauthorized: incorrect username or password")]
    Denied { registry: String },
    #[error("login to {registry} failed: {reason}")]
    Registry { registry: String, reason: String },
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// Succeeds when `registry` accepts `credentials`.
pub async fn verify(registry: &str, credentials: &Credentials) -> Result<(), LoginError> {
    let fail = |reason: String| LoginError::Registry {
        registry: registry.to_owned(),
        reason,
    };
    let http = reqwest::Client::builder()
        .timeout(DEADLINE)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail(describe(&e)))?;
    let scheme = if is_insecure(registry) { "http" } else { "https" };
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    let ping = format!("{scheme}://{host}/v2/");
    let response = http.get(&ping).send().await.map_err(|e| fail(describe(&e)))?;
    if response.status().is_success() {
        return Ok(());
    }
    if response.status() != StatusCode::UNAUTHORIZED {
        return Err(fail(format!("registry answered {}", response.status())));
    }
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_challenge)
        .ok_or_else(|| fail("registry answered 401 without a usable challenge".into()))?;
    let header = match challenge {
        Challenge::Basic => None,
        Challenge::Bearer { realm, service } => {
            Some(token(&http, registry, &realm, service.as_deref(), credentials).await?)
        }
    };
    let request = match header {
        Some(token) => http.get(&ping).bearer_auth(token),
        None => http
            .get(&ping)
            .basic_auth(&credentials.username, Some(&credentials.password)),
    };
    let status = request.send().await.map_err(|e| fail(describe(&e)))?.status();
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(LoginError::Denied {
            registry: registry.to_owned(),
        }),
        s => Err(fail(format!("registry answered {s}"))),
    }
}

/// Asks the token realm for a token with the credentials.
async fn token(
    http: &reqwest::Client,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    credentials: &Credentials,
) -> Result<String, LoginError> {
    let fail = |reason: String| LoginError::Registry {
        registry: registry.to_owned(),
        reason,
    };
    let mut url = reqwest::Url::parse(realm).map_err(|_| fail("token realm is not a URL".into()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail("token realm is not an http(s) URL".into()));
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(s) = service {
            query.append_pair("service", s);
        }
        query.append_pair("account", &credentials.username);
    }
    let response = http
        .get(url)
        .basic_auth(&credentials.username, Some(&credentials.password))
        .send()
        .await
        .map_err(|e| fail(describe(&e)))?;
    match response.status() {
        s if s.is_success() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(LoginError::Denied {
                registry: registry.to_owned(),
            })
        }
        s => return Err(fail(format!("token server answered {s}"))),
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(describe(&e)))?;
        body.extend_from_slice(&chunk);
        if body.len() > MAX_TOKEN_BODY {
            return Err(fail("token answer too large".into()));
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| fail("token answer is not JSON".into()))?;
    value
        .get("token")
        .or_else(|| value.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| fail("token answer has no token".into()))
}

/// `Basic realm="x"` or `Bearer realm="https://...",service="...",scope="..."`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for part in split_params(params) {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer { realm: realm?, service })
}

/// Splits on commas outside double quotes.
fn split_params(params: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in params.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&params[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&params[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(parse_challenge("Basic realm=\"r\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge("Bearer realm=\"http://t/token\",service=\"reg\",scope=\"repository:a,b:pull\""),
            Some(Challenge::Bearer {
                realm: "http://t/token".into(),
                service: Some("reg".into())
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
