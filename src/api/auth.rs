//! Tenants kept apart: API keys from a TOML file (`"KEY" = "CUSTOMER_ID"`, `"*"` for an operator),
//! checked by extractors so handlers stay thin.
//!
//! Keys are compared in constant time (`subtle`), every configured key is compared on every request
//! (no early exit), and no key is ever logged or printed (`Debug` shows only how many there are).
//! Without a key file the API is open and every extractor grants everything.

use std::path::Path;

use anyhow::Context;
use axum::extract::{FromRequestParts, Path as PathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::error::{ApiError, Detail};
use super::{Ctx, query};

/// What a key may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Every customer (an operator key, `"*"` in the file).
    All,
    /// One customer's data only.
    Customer(String),
}

impl Grant {
    /// Whether this grant may read `customer`'s data.
    pub fn allows(&self, customer: &str) -> bool {
        match self {
            Grant::All => true,
            Grant::Customer(own) => own == customer,
        }
    }
}

/// The configured keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(Vec<u8>, Grant)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys, hidden)", self.keys.len())
    }
}

impl ApiKeys {
    /// Reads a key file (TOML: `"KEY" = "CUSTOMER_ID"` per line, `"*"` for an operator key).
    pub fn load(path: &Path) -> anyhow::Result<ApiKeys> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the API key file {}", path.display()))?;
        ApiKeys::parse(&text).with_context(|| format!("in the API key file {}", path.display()))
    }

    /// Parses a key file's text. Error messages never contain a key.
    pub fn parse(text: &str) -> anyhow::Result<ApiKeys> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // The parser's message may quote the line, and so a key: keep only where it is.
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            anyhow::anyhow!("not a TOML table of \"KEY\" = \"CUSTOMER_ID\" pairs{at}")
        })?;
        let mut keys = Vec::with_capacity(table.len());
        for (number, (key, value)) in table.into_iter().enumerate() {
            let entry = number + 1;
            anyhow::ensure!(
                !key.is_empty() && !key.chars().any(char::is_whitespace),
                "key number {entry} is empty or contains whitespace"
            );
            let Some(customer) = value.as_str() else {
                anyhow::bail!(
                    "the value of key number {entry} is not a string (a customer id or \"*\")"
                );
            };
            let grant = if customer == "*" {
                Grant::All
            } else {
                query::check_customer(customer).map_err(|_| {
                    anyhow::anyhow!(
                        "the value of key number {entry} is not a customer id (1 to 255 bytes) or \"*\""
                    )
                })?;
                Grant::Customer(customer.to_string())
            };
            keys.push((key.into_bytes(), grant));
        }
        anyhow::ensure!(!keys.is_empty(), "no keys: the API would refuse everything");
        Ok(ApiKeys { keys })
    }

    /// The grant of `presented`, comparing it with every key in constant time.
    pub fn grant(&self, presented: &[u8]) -> Option<&Grant> {
        let mut found = None;
        for (key, grant) in &self.keys {
            // `ct_eq` on slices of different lengths is false without looking at the bytes: the
            // length of a key may leak, its content does not.
            if bool::from(key.as_slice().ct_eq(presented)) {
                found = Some(grant);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What the request may read: everything when the API is open, else its key's grant.
/// Rejects with 401 when keys are configured and the request has no known bearer key.
#[derive(Clone, Debug)]
pub struct Access(pub Grant);

impl FromRequestParts<Ctx> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Access, ApiError> {
        let Some(keys) = &ctx.keys else {
            return Ok(Access(Grant::All));
        };
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| bearer(value.as_bytes()))
            .ok_or(ApiError::Unauthorized)?;
        keys.grant(presented)
            .cloned()
            .map(Access)
            .ok_or(ApiError::Unauthorized)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// The `{customer_id}` of the path, valid (1 to 255 bytes, else 422) and readable with the
/// request's key (else 401 or 403, checked first so that nothing is said about other customers).
#[derive(Clone, Debug)]
pub struct Customer(pub String);

impl FromRequestParts<Ctx> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Customer, ApiError> {
        let Access(grant) = Access::from_request_parts(parts, ctx).await?;
        let PathParams(customer) = PathParams::<String>::from_request_parts(parts, ctx)
            .await
            .map_err(|rejection| {
                ApiError::InvalidQuery(vec![Detail::new(
                    "path",
                    "customer_id",
                    rejection.body_text(),
                )])
            })?;
        if !grant.allows(&customer) {
            return Err(ApiError::Forbidden);
        }
        query::check_customer(&customer)?;
        Ok(Customer(customer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_maps_keys_to_customers_and_star_to_everything() {
        let keys = ApiKeys::parse("\"k3y-for-acme\" = \"acme\"\n\"root\" = \"*\"\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys.grant(b"k3y-for-acme"),
            Some(&Grant::Customer("acme".into()))
        );
        assert_eq!(keys.grant(b"root"), Some(&Grant::All));
        assert_eq!(keys.grant(b"k3y-for-acm"), None);
        assert_eq!(keys.grant(b""), None);
    }

    #[test]
    fn bad_key_files_are_refused_without_showing_a_key() {
        for text in [
            "",
            "\"secret-key\" = 3",
            "\"secret-key\" = \"\"",
            "\"secret key\" = \"acme\"",
            "secret-key = ",
        ] {
            let error = format!("{:#}", ApiKeys::parse(text).unwrap_err());
            assert!(!error.contains("secret"), "{text:?} -> {error}");
        }
        let debug = format!("{:?}", ApiKeys::parse("\"secret-key\" = \"a\"").unwrap());
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn the_bearer_token_is_read_case_insensitively() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bear"), None);
    }
}
