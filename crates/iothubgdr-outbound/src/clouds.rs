//! The Azure clouds whose service domains iothubgdr reaches by default.
//!
//! Sources: "IoT Hub endpoints" (`{hub}.azure-devices.net`), Azure Government's service
//! differences ("*.azure-devices.net → *.azure-devices.us"), Azure operated by 21Vianet
//! (`azure-devices.cn`, `servicebus.chinacloudapi.cn`, `blob.core.chinacloudapi.cn`), and the
//! Event Hubs / Storage endpoint suffixes of each cloud. Azure Germany (`azure-devices.de`,
//! `servicebus.cloudapi.de`) closed on 29 October 2021 and its hubs moved to the public cloud,
//! so it is no longer listed; an operator who still needs such a host adds it with a pattern.

/// One Azure cloud's domains for the services iothubgdr talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cloud {
    pub name: &'static str,
    /// IoT Hub registry hosts are `<hub>.<iot_hub_domain>`.
    pub iot_hub_domain: &'static str,
    /// The Event Hub-compatible endpoint of a hub is `sb://<namespace>.<service_bus_domain>/`.
    pub service_bus_domain: &'static str,
    /// Blob storage accounts are `<account>.<blob_domain>`.
    pub blob_domain: &'static str,
}

pub const CLOUDS: &[Cloud] = &[
    Cloud {
        name: "Azure public cloud",
        iot_hub_domain: "azure-devices.net",
        service_bus_domain: "servicebus.windows.net",
        blob_domain: "blob.core.windows.net",
    },
    Cloud {
        name: "Azure operated by 21Vianet (China)",
        iot_hub_domain: "azure-devices.cn",
        service_bus_domain: "servicebus.chinacloudapi.cn",
        blob_domain: "blob.core.chinacloudapi.cn",
    },
    Cloud {
        name: "Azure Government (US)",
        iot_hub_domain: "azure-devices.us",
        service_bus_domain: "servicebus.usgovcloudapi.net",
        blob_domain: "blob.core.usgovcloudapi.net",
    },
];

/// The cloud whose Service Bus domain `host` (an Event Hub-compatible endpoint's host) is
/// under, if any. `host` must be lowercase.
pub fn cloud_of_service_bus_host(host: &str) -> Option<&'static Cloud> {
    CLOUDS
        .iter()
        .find(|cloud| is_strictly_under(host, cloud.service_bus_domain))
}

/// `host` is `<one or more labels>.<domain>` (not `domain` itself).
pub(crate) fn is_strictly_under(host: &str, domain: &str) -> bool {
    host.len() > domain.len() + 1
        && host.ends_with(domain)
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hub_endpoints_map_to_their_own_cloud() {
        let cases = [
            (
                "iothub-ns-a-1-b.servicebus.windows.net",
                "azure-devices.net",
            ),
            ("ns.servicebus.chinacloudapi.cn", "azure-devices.cn"),
            ("ns.servicebus.usgovcloudapi.net", "azure-devices.us"),
        ];
        for (host, domain) in cases {
            assert_eq!(
                cloud_of_service_bus_host(host).map(|c| c.iot_hub_domain),
                Some(domain),
                "{host}"
            );
        }
        for host in [
            "servicebus.windows.net",
            "ns.servicebus.cloudapi.de",
            "evil-servicebus.windows.net",
            "ns.servicebus.windows.net.evil.com",
            "nsservicebus.windows.net",
        ] {
            assert_eq!(cloud_of_service_bus_host(host), None, "{host}");
        }
    }
}
