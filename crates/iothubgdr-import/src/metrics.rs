//! The import figures served on `/metrics` beside the HTTP ones.
//!
//! Names are registered without the `iothubgdr_` prefix: the process registry adds it
//! (`iothubgdr_api::new_registry`), so `devices_imported` is served as
//! `iothubgdr_devices_imported_total`, the name the README lists.

use std::sync::atomic::AtomicU64;

use iothub_client::{RequestObserver, RequestOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HubRequestLabels {
    pub outcome: &'static str,
    pub retried: &'static str,
}

#[derive(Clone, Default, Debug)]
pub struct ImportMetrics {
    pub imports_finished: Family<StateLabel, Counter>,
    pub imports_running: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub imports_pending: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub devices_imported: Counter<u64, AtomicU64>,
    pub hub_requests: Family<HubRequestLabels, Counter>,
}

impl ImportMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "imports_completed",
            "Imports that reached a final state, by state (finished, cancelled, failed)",
            self.imports_finished.clone(),
        );
        registry.register(
            "imports_running",
            "Imports this process is running now",
            self.imports_running.clone(),
        );
        registry.register(
            "imports_pending",
            "Imports accepted by this process and waiting for a worker",
            self.imports_pending.clone(),
        );
        registry.register(
            "devices_imported",
            "Devices written as assets by imports",
            self.devices_imported.clone(),
        );
        registry.register(
            "iothub_requests",
            "Requests to IoT Hubs by outcome, and whether the client retried after it",
            self.hub_requests.clone(),
        );
    }
}

impl RequestObserver for ImportMetrics {
    fn on_response(&self, outcome: RequestOutcome, will_retry: bool) {
        self.hub_requests
            .get_or_create(&HubRequestLabels {
                outcome: outcome.as_str(),
                retried: if will_retry { "true" } else { "false" },
            })
            .inc();
    }
}
