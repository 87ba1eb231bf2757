//! The JOSE header and the claims of a verified token, checked and turned into a [`Principal`].

use super::{reject, Algorithm, JwtVerifier};
use crate::access::{Principal, Role};
use crate::error::Reason;
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The header members that would make a verifier fetch or trust a key named by the token itself; they are
/// refused, never followed (RFC 8725 §3.10).
pub(crate) const KEY_REFERENCE_HEADERS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "x5t#S256"];

/// What the verifier needs from the header.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

/// Checks the header: an allowed `alg`, a string `kid` if any, no `crit`, no key reference.
pub(crate) fn header(h: &Map<String, Value>, allowed: &[Algorithm]) -> Result<Header> {
    let alg = match h.get("alg") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(reject(
                Reason::MalformedHeader,
                "the token's 'alg' is not a string",
            ))
        }
        None => return Err(reject(Reason::MalformedHeader, "the token has no 'alg'")),
    };
    let alg = match Algorithm::parse(alg) {
        Some(a) if allowed.contains(&a) => a,
        // `none` in any letter case lands here, as does every name outside the configured keys' algorithms.
        _ => {
            return Err(reject(
                Reason::AlgNotAllowed,
                "the token's algorithm is not allowed",
            ))
        }
    };
    for name in KEY_REFERENCE_HEADERS {
        if h.contains_key(name) {
            return Err(reject(
                Reason::KeyReferenceNotAllowed,
                "the token names its own key (jku, x5u, jwk, x5c): keys come only from configuration",
            )
            .with_detail("header", name));
        }
    }
    if h.contains_key("crit") {
        return Err(reject(
            Reason::UnsupportedCrit,
            "the token has critical header extensions trialport does not understand",
        ));
    }
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(reject(
                Reason::MalformedHeader,
                "the token's 'kid' is not a string",
            ))
        }
    };
    if h.get("typ").is_some_and(|t| !t.is_string()) {
        return Err(reject(
            Reason::MalformedHeader,
            "the token's 'typ' is not a string",
        ));
    }
    Ok(Header { alg, kid })
}

/// Checks the registered claims against the clock and the configuration, and maps the identity claims.
pub(crate) fn principal(
    c: &Map<String, Value>,
    v: &JwtVerifier,
    now: DateTime<Utc>,
) -> Result<Principal> {
    let now = now.timestamp();
    let leeway = i64::from(v.leeway_secs);
    // Types first: a claim of the wrong type is never treated as absent (CVE-2026-25537).
    let exp = numeric(c, "exp")?.ok_or_else(|| missing("exp"))?;
    let nbf = numeric(c, "nbf")?;
    let iat = numeric(c, "iat")?;
    let auth_time = numeric(c, "auth_time")?;
    let iss = string(c, "iss")?;
    string(c, "jti")?;
    if now >= exp.saturating_add(leeway) {
        return Err(reject(Reason::TokenExpired, "the token has expired"));
    }
    if nbf.is_some_and(|nbf| now < nbf.saturating_sub(leeway)) {
        return Err(reject(
            Reason::TokenNotYetValid,
            "the token is not valid yet",
        ));
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(reject(
            Reason::TokenIssuedInFuture,
            "the token was issued in the future",
        ));
    }
    if let Some(max) = v.max_lifetime_secs {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // With `iat` the lifetime is the token's own claim; without it, what is left of it now, give or take the
        // clock skew the leeway allows.
        let too_long = match iat {
            Some(iat) => exp.saturating_sub(iat) > max,
            None => exp.saturating_sub(now) > max.saturating_add(leeway),
        };
        if too_long {
            return Err(reject(
                Reason::TokenLifetimeTooLong,
                "the token is valid for longer than this engine accepts",
            )
            .with_detail("max_lifetime_secs", max));
        }
    }
    if auth_time.is_some_and(|t| t > now.saturating_add(leeway)) {
        return Err(reject(
            Reason::InvalidClaim,
            "the token's authentication time is in the future",
        )
        .with_detail("claim", "auth_time"));
    }
    if !v.issuers.is_empty() && !iss.is_some_and(|i| v.issuers.iter().any(|x| x == i)) {
        return Err(reject(
            Reason::InvalidIssuer,
            "the token's issuer is not accepted",
        ));
    }
    audience(c, &v.audiences)?;

    let sub = string(c, "sub")?.ok_or_else(|| missing("sub"))?;
    if sub.is_empty()
        || sub.len() > 256
        || sub.chars().any(char::is_control)
        || sub.starts_with("apikey:")
        || sub == "system"
        || sub == "anonymous"
    {
        return Err(invalid_claim("sub"));
    }
    let name = match string(c, "name")? {
        Some(n) if n.is_empty() || n.len() > 200 || n.chars().any(char::is_control) => {
            return Err(invalid_claim("name"))
        }
        Some(n) => n.to_string(),
        None => sub.to_string(),
    };
    let org = string(c, "org")?.ok_or_else(|| missing("org"))?;
    if crate::name::validate_name(org, "org").is_err() {
        return Err(invalid_claim("org"));
    }
    let roles = strings(c, "roles")?
        .into_iter()
        .map(|r| {
            Role::parse(r).map_err(|_| {
                reject(
                    Reason::UnknownRole,
                    "the token names a role trialport does not know",
                )
                .with_detail("claim", "roles")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let studies = strings(c, "studies")?;
    if studies
        .iter()
        .any(|s| *s != "*" && crate::name::validate_name(s, "studies").is_err())
    {
        return Err(invalid_claim("studies"));
    }
    let auth_time = match auth_time {
        Some(t) => Some(DateTime::from_timestamp(t, 0).ok_or_else(|| invalid_claim("auth_time"))?),
        None => None,
    };
    Ok(Principal {
        subject: sub.to_string(),
        name,
        org: org.to_string(),
        roles,
        studies: studies.into_iter().map(str::to_string).collect(),
        auth_time,
    })
}

/// `aud` (RFC 7519 §4.1.3): a string or a list of strings. With audiences configured, one of them must be
/// there; without, a token that names an audience is refused, since this verifier cannot be it.
fn audience(c: &Map<String, Value>, accepted: &[String]) -> Result<()> {
    let aud: Vec<&str> = match c.get("aud") {
        None => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().ok_or_else(|| wrong_type("aud")))
            .collect::<Result<_>>()?,
        Some(_) => return Err(wrong_type("aud")),
    };
    let ok = if accepted.is_empty() {
        aud.is_empty()
    } else {
        aud.iter().any(|a| accepted.iter().any(|x| x == a))
    };
    if ok {
        Ok(())
    } else {
        Err(reject(
            Reason::InvalidAudience,
            "the token is not meant for this audience",
        ))
    }
}

/// A NumericDate claim (RFC 7519 §2) as whole seconds: a JSON number, never a string.
fn numeric(c: &Map<String, Value>, name: &'static str) -> Result<Option<i64>> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.is_u64() {
                Ok(Some(i64::MAX))
            } else {
                // A fraction: whole seconds, rounded down; beyond i64 clamps (`as` saturates).
                Ok(n.as_f64().map(|f| f.floor() as i64))
            }
        }
        Some(_) => Err(wrong_type(name)),
    }
}

fn string<'a>(c: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(name)),
    }
}

fn strings<'a>(c: &'a Map<String, Value>, name: &'static str) -> Result<Vec<&'a str>> {
    match c.get(name) {
        None => Err(missing(name)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().ok_or_else(|| wrong_type(name)))
            .collect(),
        Some(_) => Err(wrong_type(name)),
    }
}

fn missing(name: &'static str) -> crate::Error {
    reject(Reason::MissingClaim, "the token lacks a required claim").with_detail("claim", name)
}

fn wrong_type(name: &'static str) -> crate::Error {
    reject(
        Reason::InvalidClaimType,
        "a claim of the token has the wrong JSON type",
    )
    .with_detail("claim", name)
}

fn invalid_claim(name: &'static str) -> crate::Error {
    reject(
        Reason::InvalidClaim,
        "a claim of the token has an invalid value",
    )
    .with_detail("claim", name)
}
