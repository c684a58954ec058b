//! The outbound policy: which hosts iothubgdr may reach on a tenant's behalf.
//!
//! A tenant hands the service a host to connect to (an IoT Hub in a connection string, a blob
//! container in a SAS URL). Without rules, that turns the service into a proxy into its own
//! network. One [`OutboundPolicy`] per kind of service holds the rules, applied in this order:
//!
//! 1. **Domain rule** (decided before any connection): the host must match one of the allowed
//!    patterns: the service's domains in every Azure cloud ([`clouds::CLOUDS`]) plus the
//!    operator's own (`*.azure-devices.contoso.internal`). IP literals never match.
//! 2. **Address rule** (decided at connect time, inside the HTTP client's DNS resolver, so a
//!    name that resolves to a public address when checked and to 127.0.0.1 when connecting —
//!    DNS rebinding — is caught): every address the name resolves to must be public
//!    ([`forbidden_class`]). A host the operator *pinned* to an address (how tests and the
//!    demo reach the local emulator) skips DNS and this rule, never the domain rule.
//! 3. **No redirects**: [`OutboundPolicy::client_builder`] turns them off, so a 3xx comes back
//!    to the caller as an answer, to be reported, never followed.
//!
//! Refusals say why, name only the host (never a URL, which may carry a SAS signature), and
//! are errors of their own type so callers can tell them from network failures.

mod address;
pub mod clouds;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

pub use address::{forbidden_class, AddressClass};
pub use clouds::{cloud_of_service_bus_host, Cloud, CLOUDS};

/// An allowed host: `*.example.com` (any host below `example.com`, not `example.com`
/// itself) or an exact host name. Case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Lowercase, no leading `*.`.
    domain: String,
    wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a host pattern: use a host name (hub.example.com) or `*.` and a domain (*.azure-devices.example.com); {why}")]
pub struct PatternError {
    pattern: String,
    why: &'static str,
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.wildcard {
            clouds::is_strictly_under(&host, &self.domain)
        } else {
            host == self.domain
        }
    }
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why| PatternError {
            pattern: text.chars().take(100).collect(),
            why,
        };
        let trimmed = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, domain) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, trimmed),
        };
        if domain.is_empty() {
            return Err(error("it names no domain"));
        }
        if !is_host_name(&domain) {
            return Err(error(
                "labels are letters, digits and hyphens, and `*` may only be the first label",
            ));
        }
        if domain.parse::<IpAddr>().is_ok()
            || domain.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            return Err(error("IP addresses are never allowed"));
        }
        if wildcard && !domain.contains('.') {
            return Err(error("a wildcard needs a domain of at least two labels"));
        }
        Ok(Self { domain, wildcard })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.domain)
        } else {
            f.write_str(&self.domain)
        }
    }
}

fn is_host_name(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why a host may not be reached. Names the host and the rule, never a URL or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the {service} host {host} is not allowed: only hosts under {allowed} are reached (the service's operator can allow more)")]
    DomainNotAllowed {
        service: &'static str,
        host: String,
        allowed: String,
    },
    #[error("the {service} host must be a host name, not an IP address")]
    IpLiteral { service: &'static str },
    #[error("the {service} host {host} is not a valid host name")]
    InvalidHost { service: &'static str, host: String },
    #[error("the {service} host {host} resolves to {class}, which is never reached (the service's operator can pin the host to an address)")]
    ForbiddenAddress {
        service: &'static str,
        host: String,
        class: AddressClass,
    },
    #[error("the {service} host {host} could not be resolved")]
    Unresolved { service: &'static str, host: String },
    #[error("the {service} address must use https")]
    NotHttps { service: &'static str },
}

/// The rules for one kind of outbound service. Cheap to clone.
#[derive(Clone)]
pub struct OutboundPolicy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    service: &'static str,
    allowed: Vec<HostPattern>,
    pins: HashMap<String, SocketAddr>,
}

impl fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("service", &self.inner.service)
            .field("allowed", &self.allowed_list())
            .field("pins", &self.inner.pins)
            .finish()
    }
}

impl OutboundPolicy {
    /// IoT Hub registry hosts: `*.<iot_hub_domain>` of every cloud in [`CLOUDS`].
    pub fn iot_hub() -> Self {
        Self::for_domains("IoT Hub", CLOUDS.iter().map(|c| c.iot_hub_domain))
    }

    /// Blob storage hosts: `*.<blob_domain>` of every cloud in [`CLOUDS`].
    pub fn blob_storage() -> Self {
        Self::for_domains("blob storage", CLOUDS.iter().map(|c| c.blob_domain))
    }

    fn for_domains(service: &'static str, domains: impl Iterator<Item = &'static str>) -> Self {
        let allowed = domains
            .map(|domain| HostPattern {
                domain: domain.to_owned(),
                wildcard: true,
            })
            .collect();
        Self {
            inner: Arc::new(PolicyInner {
                service,
                allowed,
                pins: HashMap::new(),
            }),
        }
    }

    /// Adds the operator's own allowed host patterns.
    pub fn allow(self, patterns: impl IntoIterator<Item = HostPattern>) -> Self {
        let mut inner = self.into_inner();
        for pattern in patterns {
            if !inner.allowed.contains(&pattern) {
                inner.allowed.push(pattern);
            }
        }
        self::OutboundPolicy {
            inner: Arc::new(inner),
        }
    }

    /// Pins hosts to addresses: no DNS, and the address rule is lifted for them (the domain
    /// rule is not).
    pub fn pin(self, pins: impl IntoIterator<Item = (String, SocketAddr)>) -> Self {
        let mut inner = self.into_inner();
        for (host, address) in pins {
            inner.pins.insert(host.to_ascii_lowercase(), address);
        }
        OutboundPolicy {
            inner: Arc::new(inner),
        }
    }

    fn into_inner(self) -> PolicyInner {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => PolicyInner {
                service: shared.service,
                allowed: shared.allowed.clone(),
                pins: shared.pins.clone(),
            },
        }
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// The allowed patterns, comma-separated, for messages.
    pub fn allowed_list(&self) -> String {
        self.inner
            .allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The domain rule: decided from the name alone, before any connection.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let service = self.inner.service;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return Err(Refusal::IpLiteral { service });
        }
        let lower = host.to_ascii_lowercase();
        if !is_host_name(&lower) {
            return Err(Refusal::InvalidHost {
                service,
                host: printable(host),
            });
        }
        if self.inner.allowed.iter().any(|p| p.matches(&lower)) {
            Ok(())
        } else {
            Err(Refusal::DomainNotAllowed {
                service,
                host: lower,
                allowed: self.allowed_list(),
            })
        }
    }

    /// The domain rule for a URL, which must also be https.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        if url.scheme() != "https" {
            return Err(Refusal::NotHttps {
                service: self.inner.service,
            });
        }
        match url.host_str() {
            Some(host) => self.check_host(host),
            None => Err(Refusal::InvalidHost {
                service: self.inner.service,
                host: String::new(),
            }),
        }
    }

    /// The addresses to connect to for `host`: the pin, or the DNS answer when every address
    /// in it is public. Both rules are checked again here, at connect time.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, Refusal> {
        self.check_host(host)?;
        let host = host.to_ascii_lowercase();
        if let Some(pinned) = self.inner.pins.get(&host) {
            return Ok(vec![*pinned]);
        }
        let service = self.inner.service;
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map_err(|_| Refusal::Unresolved {
                service,
                host: host.clone(),
            })?
            .collect();
        if addresses.is_empty() {
            return Err(Refusal::Unresolved { service, host });
        }
        // One forbidden address refuses the whole answer: a name that mixes public and
        // internal addresses is not a cloud service's.
        if let Some(class) = addresses.iter().find_map(|a| forbidden_class(a.ip())) {
            return Err(Refusal::ForbiddenAddress {
                service,
                host,
                class,
            });
        }
        Ok(addresses)
    }

    /// A reqwest builder that keeps to this policy: https only, no redirects, and every
    /// name resolved through [`OutboundPolicy::resolve`].
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.clone(),
            }))
    }
}

/// Finds the refusal inside an error chain (reqwest wraps resolver errors).
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = current {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        current = err.source();
    }
    None
}

/// `text` without control characters, cut to 253 characters: for echoing a host that
/// failed validation.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(253).collect()
}

/// The DNS resolver the HTTP client uses: [`OutboundPolicy::resolve`].
struct GuardedResolver {
    policy: OutboundPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            match policy.resolve(name.as_str()).await {
                Ok(addresses) => {
                    let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
                    Ok(addresses)
                }
                Err(refusal) => Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        text.parse().expect("pattern")
    }

    #[test]
    fn patterns_match_below_their_domain_only() {
        let p = pattern("*.Azure-Devices.Contoso.Internal.");
        assert_eq!(p.to_string(), "*.azure-devices.contoso.internal");
        assert!(p.matches("hub.azure-devices.contoso.internal"));
        assert!(p.matches("a.b.AZURE-DEVICES.contoso.internal"));
        assert!(!p.matches("azure-devices.contoso.internal"));
        assert!(!p.matches("evilazure-devices.contoso.internal"));
        assert!(!p.matches("hub.azure-devices.contoso.internal.evil.com"));
        let exact = pattern("hub.example.com");
        assert!(exact.matches("HUB.example.com"));
        assert!(!exact.matches("x.hub.example.com"));
        for bad in [
            "",
            "*",
            "*.",
            "*.com",
            "a.*.com",
            "**.example.com",
            "10.0.0.1",
            "*.10.0.0",
            "[::1]",
            "::1",
            "exa mple.com",
            "-a.example.com",
            "http://x.example.com",
            "x.example.com/path",
            "x.example.com:443",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_domains_cover_every_cloud_and_nothing_else() {
        let policy = OutboundPolicy::iot_hub();
        for host in [
            "myhub.azure-devices.net",
            "myhub.azure-devices.cn",
            "myhub.azure-devices.us",
            "myhub.device.azure-devices.net",
        ] {
            assert_eq!(policy.check_host(host), Ok(()), "{host}");
        }
        for host in [
            "azure-devices.net",
            "myhub.azure-devices.de",
            "evil.com",
            "localhost",
            "myhub.azure-devices.net.evil.com",
            "myhub.blob.core.windows.net",
        ] {
            assert!(
                matches!(
                    policy.check_host(host),
                    Err(Refusal::DomainNotAllowed { .. })
                ),
                "{host}"
            );
        }
        let blob = OutboundPolicy::blob_storage();
        assert_eq!(blob.check_host("acct.blob.core.chinacloudapi.cn"), Ok(()));
        assert_eq!(blob.check_host("acct.blob.core.usgovcloudapi.net"), Ok(()));
        assert!(blob.check_host("hub.azure-devices.net").is_err());
    }

    #[test]
    fn ip_literals_are_refused_even_when_pinned_or_allowed() {
        let policy = OutboundPolicy::iot_hub()
            .allow([pattern("*.example.com")])
            .pin([("127.0.0.1".to_owned(), "127.0.0.1:443".parse().unwrap())]);
        for host in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "[::1]",
            "169.254.169.254",
            "8.8.8.8",
        ] {
            assert!(
                matches!(policy.check_host(host), Err(Refusal::IpLiteral { .. })),
                "{host}"
            );
        }
    }

    #[test]
    fn operator_patterns_extend_the_defaults() {
        let policy = OutboundPolicy::iot_hub().allow([pattern("*.azure-devices.contoso.internal")]);
        assert_eq!(
            policy.check_host("hub.azure-devices.contoso.internal"),
            Ok(())
        );
        assert_eq!(policy.check_host("hub.azure-devices.net"), Ok(()));
        let message = policy
            .check_host("hub.other.internal")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("*.azure-devices.contoso.internal"),
            "{message}"
        );
        assert!(message.contains("hub.other.internal"), "{message}");
    }

    #[tokio::test]
    async fn a_pin_lifts_the_address_rule_but_not_the_domain_rule() {
        let emulator: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let policy = OutboundPolicy::iot_hub().pin([
            ("Hub.azure-devices.net".to_owned(), emulator),
            ("hub.example.internal".to_owned(), emulator),
        ]);
        assert_eq!(
            policy.resolve("hub.azure-devices.net").await,
            Ok(vec![emulator])
        );
        assert!(matches!(
            policy.resolve("hub.example.internal").await,
            Err(Refusal::DomainNotAllowed { .. })
        ));
    }

    #[tokio::test]
    async fn names_that_resolve_to_internal_addresses_are_refused() {
        // `localhost` resolves to loopback on every machine; allowed by pattern, it still
        // may not be reached unless pinned.
        let policy = OutboundPolicy::iot_hub().allow([pattern("localhost")]);
        let refusal = policy.resolve("localhost").await.unwrap_err();
        assert!(
            matches!(
                refusal,
                Refusal::ForbiddenAddress {
                    class: AddressClass::Loopback,
                    ..
                }
            ),
            "{refusal:?}"
        );
        assert!(refusal.to_string().contains("loopback"), "{refusal}");
        let pinned = policy.pin([("localhost".to_owned(), "127.0.0.1:1".parse().unwrap())]);
        assert!(pinned.resolve("localhost").await.is_ok());
    }

    #[tokio::test]
    async fn the_client_refuses_before_connecting_and_the_refusal_is_found_in_the_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let policy = OutboundPolicy::iot_hub().allow([pattern("localhost")]);
        let client = policy.client_builder().build().unwrap();
        let error = client
            .get(format!("https://localhost:{port}/internal"))
            .send()
            .await
            .unwrap_err();
        let refusal = refusal_in(&error).expect("a refusal in the chain");
        assert!(matches!(refusal, Refusal::ForbiddenAddress { .. }));
        assert!(listener.accept().is_err(), "the listener was reached");
        // Plain http is refused by the builder too.
        assert!(client
            .get("http://hub.azure-devices.net/")
            .send()
            .await
            .is_err());
    }
}
